/*
 * redis_server.hpp — a redis-server of the test's own, on a free loopback
 * port, for the core tests that talk to Redis. A missing redis-server is a
 * failure, not a skip.
 */
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/key_slot.hpp"
#include "redis_client.hpp"

namespace cachebust::test {

/* A port nothing listens on right now (the kernel's choice). */
inline int
free_port()
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = 0;
	socklen_t len = sizeof(addr);
	if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 ||
		getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) != 0)
		throw std::runtime_error("cannot find a free port");
	close(fd);
	return ntohs(addr.sin_port);
}

class RedisServer
{
  public:
	explicit RedisServer(std::vector<std::string> extra = {}) : extra_(std::move(extra))
	{
		start_on(free_port());
	}

	~RedisServer() { stop(); }

	/* (Re)starts the server on port (an empty one: no persistence). */
	void start_on(int port)
	{
		port_ = port;
		std::vector<std::string> args = {"redis-server", "--port", std::to_string(port_),
										 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
										 "--daemonize", "no", "--loglevel", "warning", "--logfile", "/dev/null"};
		args.insert(args.end(), extra_.begin(), extra_.end());
		pid_ = fork();
		if (pid_ == 0) {
			std::vector<char *> argv;
			for (std::string &a : args)
				argv.push_back(a.data());
			argv.push_back(nullptr);
			execvp("redis-server", argv.data());
			_exit(127);
		}
		for (int i = 0; i < 200; i++) {
			int status;
			if (waitpid(pid_, &status, WNOHANG) == pid_)
				throw std::runtime_error("redis-server exited at start (is it installed?)");
			try {
				RedisClient c;
				c.connect(url(), RedisTimeouts{200, 200});
				return;
			} catch (const RedisError &e) {
				/* A server that wants a password is up too. */
				if (std::string(e.what()).find("NOAUTH") != std::string::npos ||
					std::string(e.what()).find("AUTH") != std::string::npos)
					return;
				std::this_thread::sleep_for(std::chrono::milliseconds(25));
			}
		}
		stop();
		throw std::runtime_error("redis-server did not start");
	}

	void stop()
	{
		if (pid_ > 0) {
			kill(pid_, SIGKILL);
			waitpid(pid_, nullptr, 0);
			pid_ = -1;
		}
	}

	int port() const { return port_; }

	RedisUrl url(int db = 0) const
	{
		return RedisUrl::parse("redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db));
	}

  private:
	std::vector<std::string> extra_;
	int port_ = 0;
	pid_t pid_ = -1;
};

/* A redis-sentinel monitoring `service` at 127.0.0.1:master_port. */
class SentinelServer
{
  public:
	SentinelServer(const std::string &service, int master_port) : port_(free_port())
	{
		dir_ = "/tmp/cachebust-sentinel-" + std::to_string(getpid()) + "-" + std::to_string(port_);
		mkdir(dir_.c_str(), 0700);
		std::string conf = dir_ + "/sentinel.conf";
		FILE *f = fopen(conf.c_str(), "w");
		fprintf(f, "port %d\nbind 127.0.0.1\ndir %s\nlogfile /dev/null\nsentinel monitor %s 127.0.0.1 %d 1\n",
				port_, dir_.c_str(), service.c_str(), master_port);
		fclose(f);
		pid_ = fork();
		if (pid_ == 0) {
			execlp("redis-sentinel", "redis-sentinel", conf.c_str(), static_cast<char *>(nullptr));
			_exit(127);
		}
		for (int i = 0; i < 200; i++) {
			try {
				RedisClient c;
				c.connect(RedisUrl::parse("redis://127.0.0.1:" + std::to_string(port_)), RedisTimeouts{200, 200});
				return;
			} catch (const RedisError &) {
				std::this_thread::sleep_for(std::chrono::milliseconds(25));
			}
		}
		throw std::runtime_error("redis-sentinel did not start");
	}

	~SentinelServer()
	{
		if (pid_ > 0) {
			kill(pid_, SIGKILL);
			waitpid(pid_, nullptr, 0);
		}
		std::string rm = "rm -rf " + dir_;
		if (system(rm.c_str()) != 0) {
		}
	}

	int port() const { return port_; }

  private:
	int port_;
	pid_t pid_ = -1;
	std::string dir_;
};

/*
 * A Redis Cluster of `masters` masters without replicas, the slots split
 * evenly among them, built with CLUSTER ADDSLOTSRANGE and MEET. Slots are
 * moved as redis-cli does it (IMPORTING, MIGRATING, then NODE everywhere).
 */
class ClusterServers
{
  public:
	explicit ClusterServers(int masters, std::vector<std::string> extra = {})
	{
		static int made = 0;
		for (int i = 0; i < masters; i++) {
			std::string conf = "/tmp/cachebust-cluster-" + std::to_string(getpid()) + "-" + std::to_string(made++) +
							   ".conf";
			unlink(conf.c_str());
			confs_.push_back(conf);
			bus_ports_.push_back(free_port());
			std::vector<std::string> args = {"--cluster-enabled", "yes", "--cluster-config-file", conf,
											 "--cluster-port", std::to_string(bus_ports_.back()),
											 "--cluster-node-timeout", "1000"};
			args.insert(args.end(), extra.begin(), extra.end());
			nodes_.push_back(std::make_unique<RedisServer>(args));
		}
		for (int i = 0; i < masters; i++) {
			int first = kClusterSlots * i / masters, last = kClusterSlots * (i + 1) / masters - 1;
			must(i, {"CLUSTER", "ADDSLOTSRANGE", std::to_string(first), std::to_string(last)});
			ids_.push_back(ask(i, {"CLUSTER", "MYID"}).str);
		}
		for (int i = 1; i < masters; i++)
			must(0, {"CLUSTER", "MEET", "127.0.0.1", std::to_string(nodes_[i]->port()),
					 std::to_string(bus_ports_[static_cast<size_t>(i)])});
		wait_stable();
	}

	~ClusterServers()
	{
		nodes_.clear();
		for (const std::string &c : confs_)
			unlink(c.c_str());
	}

	int size() const { return static_cast<int>(nodes_.size()); }
	RedisServer &node(int i) { return *nodes_.at(static_cast<size_t>(i)); }
	const std::string &id(int i) const { return ids_.at(static_cast<size_t>(i)); }

	RedisUrl url() const
	{
		std::string hosts;
		for (const auto &n : nodes_)
			hosts += (hosts.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(n->port());
		return RedisUrl::parse("redis-cluster://" + hosts);
	}

	/* The node serving slot, as node i sees it. */
	int owner(int slot, int asked = 0)
	{
		Reply slots = ask(asked, {"CLUSTER", "SLOTS"});
		for (const Reply &range : slots.elements)
			if (slot >= range.elements[0].integer && slot <= range.elements[1].integer)
				for (int i = 0; i < size(); i++)
					if (range.elements[2].elements[1].integer == nodes_[static_cast<size_t>(i)]->port())
						return i;
		return -1;
	}

	/* Starts moving an (empty) slot from node `from` to node `to`: ASK from now on. */
	void start_migration(int slot, int from, int to)
	{
		must(to, {"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", id(from)});
		must(from, {"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", id(to)});
	}

	/* Moves an (empty) slot to node `to`: its old owner answers MOVED from now on. */
	void move_slot(int slot, int from, int to)
	{
		start_migration(slot, from, to);
		for (int i : {to, from})
			must(i, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", id(to)});
		for (int i = 0; i < size(); i++)
			if (i != to && i != from)
				must(i, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", id(to)});
		wait_stable();
	}

	/* Node i stops, and node `heir` takes every slot it served (a failover's effect). */
	void replace(int i, int heir)
	{
		nodes_[static_cast<size_t>(i)]->stop();
		stopped_.push_back(i);
		for (int n = 0; n < size(); n++)
			if (n != i)
				must(n, {"CLUSTER", "FORGET", id(i)});
		int first = kClusterSlots * i / size(), last = kClusterSlots * (i + 1) / size() - 1;
		must(heir, {"CLUSTER", "ADDSLOTSRANGE", std::to_string(first), std::to_string(last)});
		wait_stable();
	}

	Reply ask(int i, const Command &cmd)
	{
		RedisClient c;
		c.connect(nodes_.at(static_cast<size_t>(i))->url(), RedisTimeouts{});
		return c.command(cmd);
	}

  private:
	void must(int i, const Command &cmd)
	{
		Reply r = ask(i, cmd);
		if (r.type == Reply::Type::Error)
			throw std::runtime_error(cmd[0] + " " + cmd[1] + ": " + r.str);
	}

	/* Every running node knows every slot's owner, and they agree. */
	void wait_stable()
	{
		for (int tries = 0; tries < 400; tries++) {
			bool ok = true;
			for (int i = 0; i < size() && ok; i++)
				ok = std::find(stopped_.begin(), stopped_.end(), i) != stopped_.end() ||
					 ask(i, {"CLUSTER", "INFO"}).str.find("cluster_state:ok") != std::string::npos;
			if (ok)
				return;
			std::this_thread::sleep_for(std::chrono::milliseconds(25));
		}
		throw std::runtime_error("the test cluster did not become stable");
	}

	std::vector<std::unique_ptr<RedisServer>> nodes_;
	std::vector<std::string> confs_;
	std::vector<std::string> ids_;
	std::vector<int> bus_ports_;
	std::vector<int> stopped_;
};

} // namespace cachebust::test
