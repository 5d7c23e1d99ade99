/*
 * reply_dropping_proxy.hpp — a loopback TCP proxy in front of a Redis server
 * that can lose one reply: the command ran in Redis, its answer never
 * reaches the client. That is what a command timeout or a connection reset
 * after sending looks like from the client's side, made deterministic.
 *
 * Armed with a trigger, the proxy forwards the first chunk from a client
 * that contains it, followed by an ECHO of its own; everything Redis answers
 * up to that ECHO's reply is discarded. Then, with Loss::Close, both
 * connections are closed (a reset); with Loss::Stall, the client's
 * connection stays open and silent (the client's command timeout fires).
 * Connections made afterwards are forwarded faithfully.
 */
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/redis/url.hpp"

namespace cachebust::test {

class ReplyDroppingProxy
{
  public:
	enum class Loss { Close, Stall };

	explicit ReplyDroppingProxy(int redis_port) : redis_port_(redis_port)
	{
		listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
		int one = 1;
		setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		sockaddr_in addr = loopback(0);
		socklen_t len = sizeof(addr);
		if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 ||
			listen(listen_fd_, 16) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&addr), &len) != 0)
			throw std::runtime_error("the proxy cannot listen");
		port_ = ntohs(addr.sin_port);
		thread_ = std::thread([this] { run(); });
	}

	~ReplyDroppingProxy()
	{
		stop_ = true;
		thread_.join();
		for (Pair &p : pairs_) {
			close_fd(p.client);
			close_fd(p.server);
		}
		close(listen_fd_);
	}

	ReplyDroppingProxy(const ReplyDroppingProxy &) = delete;
	ReplyDroppingProxy &operator=(const ReplyDroppingProxy &) = delete;

	int port() const { return port_; }
	RedisUrl url() const { return RedisUrl::parse("redis://127.0.0.1:" + std::to_string(port_) + "/0"); }

	/* The next chunk a client sends that contains `trigger` has its reply lost. */
	void arm(const std::string &trigger, Loss loss)
	{
		std::lock_guard<std::mutex> guard(mutex_);
		trigger_ = trigger;
		loss_ = loss;
	}

	/* The armed command ran in Redis and its reply was discarded. */
	bool dropped() const { return dropped_; }

  private:
	struct Pair {
		int client;
		int server;
		bool stalled = false; /* the client is kept waiting forever */
	};

	static sockaddr_in loopback(int port)
	{
		sockaddr_in addr{};
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		addr.sin_port = htons(static_cast<uint16_t>(port));
		return addr;
	}

	static void close_fd(int &fd)
	{
		if (fd >= 0)
			close(fd);
		fd = -1;
	}

	static bool write_all(int fd, const char *data, size_t size)
	{
		while (size > 0) {
			ssize_t n = ::write(fd, data, size);
			if (n <= 0)
				return false;
			data += n;
			size -= static_cast<size_t>(n);
		}
		return true;
	}

	/* Runs the chunk in Redis and reads (and discards) everything up to our marker's reply. */
	static void run_and_discard(Pair &p, const std::string &chunk)
	{
		static const std::string marker = "cachebust-proxy-marker";
		std::string echo = "*2\r\n$4\r\nECHO\r\n$" + std::to_string(marker.size()) + "\r\n" + marker + "\r\n";
		std::string expect = "$" + std::to_string(marker.size()) + "\r\n" + marker + "\r\n";
		std::string seen;
		if (!write_all(p.server, chunk.data(), chunk.size()) || !write_all(p.server, echo.data(), echo.size()))
			return;
		while (seen.size() < expect.size() || seen.compare(seen.size() - expect.size(), expect.size(), expect) != 0) {
			pollfd pfd{p.server, POLLIN, 0};
			if (poll(&pfd, 1, 5000) <= 0)
				return;
			char buf[65536];
			ssize_t n = ::read(p.server, buf, sizeof(buf));
			if (n <= 0)
				return;
			seen.append(buf, static_cast<size_t>(n));
		}
	}

	void run()
	{
		while (!stop_) {
			std::vector<pollfd> fds;
			fds.push_back(pollfd{listen_fd_, POLLIN, 0});
			for (Pair &p : pairs_) {
				fds.push_back(pollfd{p.client, POLLIN, 0});
				fds.push_back(pollfd{p.server, POLLIN, 0});
			}
			if (poll(fds.data(), fds.size(), 20) <= 0)
				continue;
			if (fds[0].revents & POLLIN)
				accept_one();
			for (size_t i = 0; i < pairs_.size() && 2 * i + 2 < fds.size(); i++) {
				Pair &p = pairs_[i];
				if (fds[2 * i + 1].revents != 0)
					from_client(p);
				if (fds[2 * i + 2].revents != 0 && p.server >= 0)
					forward(p.server, p.client, p);
			}
			/* Closed pairs go (a stalled client stays until it leaves). */
			std::vector<Pair> open;
			for (Pair &p : pairs_)
				if (p.client >= 0)
					open.push_back(p);
				else
					close_fd(p.server);
			pairs_.swap(open);
		}
	}

	void accept_one()
	{
		int client = accept(listen_fd_, nullptr, nullptr);
		if (client < 0)
			return;
		int server = socket(AF_INET, SOCK_STREAM, 0);
		sockaddr_in addr = loopback(redis_port_);
		if (server < 0 || ::connect(server, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
			close(client);
			if (server >= 0)
				close(server);
			return;
		}
		pairs_.push_back(Pair{client, server});
	}

	void from_client(Pair &p)
	{
		char buf[65536];
		ssize_t n = ::read(p.client, buf, sizeof(buf));
		if (n <= 0) {
			close_fd(p.client);
			close_fd(p.server);
			return;
		}
		if (p.stalled)
			return; /* heard, never answered */
		std::string chunk(buf, static_cast<size_t>(n));
		std::string trigger;
		Loss loss;
		{
			std::lock_guard<std::mutex> guard(mutex_);
			trigger = trigger_;
			loss = loss_;
			if (!trigger.empty() && chunk.find(trigger) != std::string::npos)
				trigger_.clear();
			else
				trigger.clear();
		}
		if (trigger.empty()) {
			if (!write_all(p.server, chunk.data(), chunk.size())) {
				close_fd(p.client);
				close_fd(p.server);
			}
			return;
		}
		run_and_discard(p, chunk);
		close_fd(p.server);
		if (loss == Loss::Close)
			close_fd(p.client);
		else
			p.stalled = true;
		dropped_ = true;
	}

	void forward(int from, int to, Pair &p)
	{
		char buf[65536];
		ssize_t n = ::read(from, buf, sizeof(buf));
		if (n <= 0 || !write_all(to, buf, static_cast<size_t>(n))) {
			close_fd(p.client);
			close_fd(p.server);
		}
	}

	int redis_port_;
	int listen_fd_ = -1;
	int port_ = 0;
	std::thread thread_;
	std::atomic<bool> stop_{false};
	std::atomic<bool> dropped_{false};
	std::mutex mutex_;
	std::string trigger_;
	Loss loss_ = Loss::Close;
	std::vector<Pair> pairs_; /* the proxy thread's own */
};

} // namespace cachebust::test
