/*
 * transport.cpp — non-blocking TCP and Unix-socket streams.
 *
 * Numeric addresses (what the tests and most configurations use) never
 * block. A host name is resolved with getaddrinfo, which does block for as
 * long as the system resolver takes; there is no portable non-blocking
 * resolver that does not start a thread, and threads do not belong in a
 * PostgreSQL process.
 */
#include "core/redis/transport.hpp"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "core/redis/tls.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

std::string
Endpoint::describe() const
{
	if (unix_socket)
		return path;
	if (host.find(':') != std::string::npos)
		return "[" + host + "]:" + std::to_string(port);
	return host + ":" + std::to_string(port);
}

namespace {

std::string
errno_text(const char *what, int err)
{
	return std::string(what) + ": " + strerror(err);
}

class SocketTransport final : public Transport
{
  public:
	explicit SocketTransport(const Endpoint &ep);
	~SocketTransport() override
	{
		if (fd_ >= 0)
			close(fd_);
	}

	int fd() const override { return fd_; }
	IoWait connect_step() override;
	size_t read(char *buf, size_t len, IoWait &wait) override;
	size_t write(const char *buf, size_t len, IoWait &wait) override;

  private:
	int fd_ = -1;
	bool connected_ = false;
};

int
new_socket(int family)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		throw TransportError(errno_text("cannot create a socket", errno));
	return fd;
}

/* The first address of host:port; numeric hosts are not looked up. */
void
resolve(const Endpoint &ep, sockaddr_storage &addr, socklen_t &len)
{
	addrinfo hints{};
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	addrinfo *res = nullptr;
	std::string port = std::to_string(ep.port);
	int rc = getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res);
	if (rc == EAI_NONAME) {
		hints.ai_flags = AI_NUMERICSERV;
		rc = getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res);
	}
	if (rc != 0 || res == nullptr)
		throw TransportError(std::string("cannot resolve the host name: ") + gai_strerror(rc));
	memcpy(&addr, res->ai_addr, res->ai_addrlen);
	len = res->ai_addrlen;
	freeaddrinfo(res);
}

SocketTransport::SocketTransport(const Endpoint &ep)
{
	sockaddr_storage addr{};
	socklen_t len = 0;
	if (ep.unix_socket) {
		sockaddr_un *un = reinterpret_cast<sockaddr_un *>(&addr);
		if (ep.path.size() >= sizeof(un->sun_path))
			throw TransportError("the socket path is too long");
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, ep.path.c_str(), ep.path.size() + 1);
		len = sizeof(sockaddr_un);
	} else
		resolve(ep, addr, len);

	fd_ = new_socket(addr.ss_family);
	if (!ep.unix_socket) {
		int one = 1;
		(void) setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (::connect(fd_, reinterpret_cast<sockaddr *>(&addr), len) == 0)
		connected_ = true;
	else if (errno != EINPROGRESS && errno != EAGAIN) {
		int err = errno;
		close(fd_);
		fd_ = -1;
		throw TransportError(errno_text("cannot connect", err));
	}
}

IoWait
SocketTransport::connect_step()
{
	if (connected_)
		return IoWait::None;
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0)
		throw TransportError(errno_text("cannot connect", err));
	sockaddr_storage peer;
	socklen_t peer_len = sizeof(peer);
	if (getpeername(fd_, reinterpret_cast<sockaddr *>(&peer), &peer_len) != 0) {
		if (errno == ENOTCONN)
			return IoWait::Write; /* still in progress */
		throw TransportError(errno_text("cannot connect", errno));
	}
	connected_ = true;
	return IoWait::None;
}

size_t
SocketTransport::read(char *buf, size_t len, IoWait &wait)
{
	for (;;) {
		ssize_t n = ::recv(fd_, buf, len, 0);
		if (n > 0)
			return static_cast<size_t>(n);
		if (n == 0)
			throw TransportError("the server closed the connection");
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			wait = IoWait::Read;
			return 0;
		}
		throw TransportError(errno_text("cannot read", errno));
	}
}

size_t
SocketTransport::write(const char *buf, size_t len, IoWait &wait)
{
	for (;;) {
		ssize_t n = ::send(fd_, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return static_cast<size_t>(n);
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			wait = IoWait::Write;
			return 0;
		}
		throw TransportError(errno_text("cannot write", errno));
	}
}

} // namespace

std::unique_ptr<Transport>
open_transport(const Endpoint &ep, const std::shared_ptr<TlsContext> &tls)
{
	auto socket = std::make_unique<SocketTransport>(ep);
	if (!tls)
		return socket;
	return open_tls_transport(std::move(socket), tls, ep.host);
}

} // namespace cachebust
