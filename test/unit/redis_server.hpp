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

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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

} // namespace cachebust::test
