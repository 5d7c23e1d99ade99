/*
 * fake_server.hpp — a scripted "Redis" on a free loopback port, for tests
 * of what a broken or hostile server does to a connection. A thread accepts
 * one client at a time and runs the test's script on it; the script reads
 * commands and writes whatever bytes it likes. Every wait in here is
 * bounded and looks at the stop flag, so the destructor always returns.
 */
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace cachebust::test {

/* One accepted client, as the script sees it. */
class FakePeer
{
  public:
	FakePeer(int fd, const std::atomic<bool> &stop) : fd_(fd), stop_(stop) {}

	/* The next command's arguments; false when the client is gone or the server stops. */
	bool read_command(std::vector<std::string> &argv)
	{
		for (;;) {
			if (parse_command(argv))
				return true;
			if (!fill())
				return false;
		}
	}

	/* Reads commands until "PING" and answers it: what a handshake without AUTH asks. */
	bool answer_ping()
	{
		std::vector<std::string> argv;
		while (read_command(argv))
			if (!argv.empty() && argv[0] == "PING")
				return write("+PONG\r\n");
		return false;
	}

	/* Writes all of bytes; false when the client is gone or the server stops. */
	bool write(std::string_view bytes)
	{
		size_t done = 0;
		while (done < bytes.size()) {
			if (stop_)
				return false;
			pollfd p{fd_, POLLOUT, 0};
			if (poll(&p, 1, 50) <= 0)
				continue;
			ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
			if (n <= 0)
				return false;
			done += static_cast<size_t>(n);
		}
		return true;
	}

	/* Waits until the client closes (or the server stops), reading and ignoring what it sends. */
	void wait_for_close()
	{
		while (fill()) {
			buf_.clear();
		}
	}

	bool stopping() const { return stop_; }
	int fd() const { return fd_; }

  private:
	bool fill()
	{
		char chunk[4096];
		for (;;) {
			if (stop_)
				return false;
			pollfd p{fd_, POLLIN, 0};
			if (poll(&p, 1, 50) <= 0)
				continue;
			ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
			if (n <= 0)
				return false;
			buf_.append(chunk, static_cast<size_t>(n));
			return true;
		}
	}

	/* One "*N\r\n$len\r\narg\r\n..." command from the front of buf_, if it is all there. */
	bool parse_command(std::vector<std::string> &argv)
	{
		size_t pos = 0;
		auto line = [&](char kind, long &value) {
			size_t end = buf_.find("\r\n", pos);
			if (end == std::string::npos)
				return false;
			if (buf_[pos] != kind)
				throw std::runtime_error("fake server: not a command");
			value = std::stol(buf_.substr(pos + 1, end - pos - 1));
			pos = end + 2;
			return true;
		};
		long argc;
		if (!line('*', argc))
			return false;
		std::vector<std::string> out;
		for (long i = 0; i < argc; i++) {
			long len;
			if (!line('$', len))
				return false;
			if (buf_.size() < pos + static_cast<size_t>(len) + 2)
				return false;
			out.push_back(buf_.substr(pos, static_cast<size_t>(len)));
			pos += static_cast<size_t>(len) + 2;
		}
		buf_.erase(0, pos);
		argv = std::move(out);
		return true;
	}

	int fd_;
	const std::atomic<bool> &stop_;
	std::string buf_;
};

class FakeServer
{
  public:
	using Script = std::function<void(FakePeer &)>;

	explicit FakeServer(Script script) : script_(std::move(script))
	{
		listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int one = 1;
		setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		sockaddr_in addr{};
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t len = sizeof(addr);
		if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 ||
			listen(listen_fd_, 8) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&addr), &len) != 0)
			throw std::runtime_error("fake server: cannot listen");
		port_ = ntohs(addr.sin_port);
		thread_ = std::thread([this] { run(); });
	}

	~FakeServer()
	{
		stop_ = true;
		thread_.join();
		close(listen_fd_);
	}

	int port() const { return port_; }
	/* Clients accepted so far. */
	int accepted() const { return accepted_; }

  private:
	void run()
	{
		while (!stop_) {
			pollfd p{listen_fd_, POLLIN, 0};
			if (poll(&p, 1, 50) <= 0)
				continue;
			int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			accepted_++;
			FakePeer peer(fd, stop_);
			try {
				script_(peer);
			} catch (const std::exception &) {
				/* a script that gave up: drop the client */
			}
			close(fd);
		}
	}

	Script script_;
	int listen_fd_ = -1;
	int port_ = 0;
	std::atomic<bool> stop_{false};
	std::atomic<int> accepted_{0};
	std::thread thread_;
};

} // namespace cachebust::test
