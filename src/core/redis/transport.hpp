/*
 * transport.hpp — a non-blocking byte stream to one Redis server.
 *
 * TCP, a Unix socket, or TLS over TCP. Nothing here ever blocks (name
 * resolution of a host that is not a numeric address aside, see
 * transport.cpp): every step reports what it waits for, and the owner
 * waits for that with the rest of its events — in the worker, on its latch
 * with WaitEventSetWait, so a slow connect or handshake never makes it deaf
 * to signals. Errors are TransportError; their messages never name the
 * endpoint (callers add it where the reader may see it) and never hold
 * credentials or key material.
 */
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>

namespace cachebust {

class TransportError : public std::runtime_error
{
  public:
	using std::runtime_error::runtime_error;
};

/* Where a server listens. */
struct Endpoint {
	bool unix_socket = false;
	std::string host; /* TCP */
	int port = 6379;  /* TCP */
	std::string path; /* Unix socket */

	/* host:port, [v6]:port or the socket path. */
	std::string describe() const;
	bool operator==(const Endpoint &o) const
	{
		return unix_socket == o.unix_socket && host == o.host && port == o.port && path == o.path;
	}
	bool operator!=(const Endpoint &o) const { return !(*this == o); }
};

/* What a pending operation waits for. */
enum class IoWait { None, Read, Write };

class TlsContext; /* tls.hpp */

class Transport
{
  public:
	virtual ~Transport() = default;

	virtual int fd() const = 0;
	/* Advances the connection (TCP connect, then the TLS handshake).
	 * None: established. Throws TransportError. */
	virtual IoWait connect_step() = 0;
	/* Reads up to len bytes. 0 means nothing now: wait for `wait`.
	 * End of stream and errors throw TransportError. */
	virtual size_t read(char *buf, size_t len, IoWait &wait) = 0;
	/* Writes up to len bytes; 0 means wait for `wait`. */
	virtual size_t write(const char *buf, size_t len, IoWait &wait) = 0;
};

/* Starts connecting to ep (over TLS when tls is not null); finish with connect_step(). */
std::unique_ptr<Transport> open_transport(const Endpoint &ep, const std::shared_ptr<TlsContext> &tls);

} // namespace cachebust
