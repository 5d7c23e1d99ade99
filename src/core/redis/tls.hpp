/*
 * tls.hpp — TLS for Redis connections (rediss://), with OpenSSL.
 *
 * Debian's hiredis (0.14) has no TLS, and hiredis only ever formats
 * commands and parses replies for us anyway: the transport is ours, so TLS
 * is a Transport that wraps the TCP one. A TlsContext holds what is loaded
 * from files (trust anchors, client certificate and key); it is built when
 * the settings change and shared by every connection that uses them.
 */
#pragma once

#include <memory>
#include <string>

#include "core/redis/transport.hpp"

typedef struct ssl_ctx_st SSL_CTX;

namespace cachebust {

struct TlsSettings {
	enum class Verify { Full, Ca, None };

	std::string ca_file;	 /* empty: the system's trust store */
	std::string cert_file;	 /* client certificate (optional) */
	std::string key_file;	 /* its private key */
	std::string server_name; /* SNI and the name verified; empty: the endpoint's host */
	Verify verify = Verify::Full;

	bool operator==(const TlsSettings &o) const
	{
		return ca_file == o.ca_file && cert_file == o.cert_file && key_file == o.key_file &&
			   server_name == o.server_name && verify == o.verify;
	}
	bool operator!=(const TlsSettings &o) const { return !(*this == o); }
};

class TlsContext
{
  public:
	/* Loads the files; throws TransportError naming what could not be loaded. */
	explicit TlsContext(const TlsSettings &settings);
	~TlsContext();
	TlsContext(const TlsContext &) = delete;
	TlsContext &operator=(const TlsContext &) = delete;

	SSL_CTX *ssl_ctx() const { return ctx_; }
	const TlsSettings &settings() const { return settings_; }

  private:
	SSL_CTX *ctx_ = nullptr;
	TlsSettings settings_;
};

/* TLS over an established-or-connecting socket; host is the default name to verify. */
std::unique_ptr<Transport> open_tls_transport(std::unique_ptr<Transport> socket,
											  std::shared_ptr<TlsContext> ctx, const std::string &host);

} // namespace cachebust
