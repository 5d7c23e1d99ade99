/*
 * fake_node.hpp — a scripted Redis node on a free loopback port, for
 * replies a real server will not give on demand (an ASK for SPUBLISH, two
 * nodes that keep redirecting to each other). Each command, as argv, goes
 * to the handler, which returns the raw RESP reply; a thread serves every
 * connection.
 */
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/redis/resp.hpp"

namespace cachebust::test {

class FakeNode
{
  public:
	using Handler = std::function<std::string(const std::vector<std::string> &argv)>;

	explicit FakeNode(Handler handler) : handler_(std::move(handler))
	{
		listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
		int one = 1;
		setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		sockaddr_in addr{};
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t len = sizeof(addr);
		if (bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 || listen(listen_fd_, 16) != 0 ||
			getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&addr), &len) != 0)
			throw std::runtime_error("the fake node cannot listen");
		port_ = ntohs(addr.sin_port);
		thread_ = std::thread([this] { serve(); });
	}

	~FakeNode()
	{
		stop_ = true;
		thread_.join();
		for (Client &c : clients_)
			close(c.fd);
		close(listen_fd_);
	}

	int port() const { return port_; }

	/* Every command received so far, in order, connections interleaved. */
	std::vector<std::vector<std::string>> received()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return received_;
	}

	/* The reply of an array of (start, end, port) ranges as CLUSTER SLOTS gives it. */
	static std::string slots_reply(const std::vector<std::vector<int>> &ranges)
	{
		std::string out = "*" + std::to_string(ranges.size()) + "\r\n";
		for (const std::vector<int> &r : ranges)
			out += "*3\r\n:" + std::to_string(r[0]) + "\r\n:" + std::to_string(r[1]) + "\r\n*3\r\n$9\r\n127.0.0.1\r\n:" +
				   std::to_string(r[2]) + "\r\n$2\r\nid\r\n";
		return out;
	}

  private:
	struct Client {
		int fd;
		std::shared_ptr<ReplyReader> reader;
	};

	void serve()
	{
		while (!stop_) {
			std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
			for (const Client &c : clients_)
				fds.push_back(pollfd{c.fd, POLLIN, 0});
			if (poll(fds.data(), fds.size(), 10) <= 0)
				continue;
			if (fds[0].revents & POLLIN) {
				int fd = accept(listen_fd_, nullptr, nullptr);
				if (fd >= 0)
					clients_.push_back(Client{fd, std::make_shared<ReplyReader>()});
			}
			for (size_t i = 1; i < fds.size(); i++) {
				if (fds[i].revents == 0)
					continue;
				Client &c = clients_[i - 1];
				char buf[4096];
				ssize_t n = read(c.fd, buf, sizeof(buf));
				if (n <= 0) {
					close(c.fd);
					c.fd = -1;
					continue;
				}
				c.reader->feed(buf, static_cast<size_t>(n));
				Reply cmd;
				std::string out;
				while (c.reader->next(cmd)) {
					std::vector<std::string> argv;
					for (Reply &a : cmd.elements)
						argv.push_back(a.str);
					{
						std::lock_guard<std::mutex> lock(mutex_);
						received_.push_back(argv);
					}
					out += argv.size() == 1 && argv[0] == "PING" ? "+PONG\r\n" : handler_(argv);
				}
				if (!out.empty() && write(c.fd, out.data(), out.size()) != static_cast<ssize_t>(out.size()))
					throw std::runtime_error("the fake node cannot reply");
			}
			std::vector<Client> open;
			for (Client &c : clients_)
				if (c.fd >= 0)
					open.push_back(c);
			clients_.swap(open);
		}
	}

	Handler handler_;
	int listen_fd_ = -1;
	int port_ = 0;
	std::thread thread_;
	std::atomic<bool> stop_{false};
	std::vector<Client> clients_;
	std::mutex mutex_;
	std::vector<std::vector<std::string>> received_;
};

} // namespace cachebust::test
