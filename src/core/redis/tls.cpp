/*
 * tls.cpp — an OpenSSL client session over a non-blocking socket.
 *
 * Error messages come from OpenSSL's error strings and the certificate
 * verification result; they name what failed (e.g. "certificate verify
 * failed: self-signed certificate in certificate chain"), never key
 * material or the Redis password, which this layer never sees.
 */
#include "core/redis/tls.hpp"

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* The oldest error in OpenSSL's queue, as text; the queue is cleared. */
std::string
openssl_error(const char *what)
{
	unsigned long code = ERR_get_error();
	ERR_clear_error();
	if (code == 0)
		return what;
	char buf[256];
	ERR_error_string_n(code, buf, sizeof(buf));
	return std::string(what) + ": " + buf;
}

bool
is_ip_address(const std::string &host)
{
	unsigned char buf[sizeof(in6_addr)];
	return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

class TlsTransport final : public Transport
{
  public:
	TlsTransport(std::unique_ptr<Transport> socket, std::shared_ptr<TlsContext> ctx, std::string name)
		: socket_(std::move(socket)), ctx_(std::move(ctx)), name_(std::move(name))
	{
	}
	~TlsTransport() override
	{
		if (ssl_ != nullptr)
			SSL_free(ssl_);
	}

	int fd() const override { return socket_->fd(); }
	IoWait connect_step() override;
	size_t read(char *buf, size_t len, IoWait &wait) override;
	size_t write(const char *buf, size_t len, IoWait &wait) override;

  private:
	void start_session();
	/* What to wait for after an SSL call returned rc, or throws. */
	IoWait check(int rc, const char *what);

	std::unique_ptr<Transport> socket_;
	std::shared_ptr<TlsContext> ctx_;
	std::string name_;
	SSL *ssl_ = nullptr;
	bool established_ = false;
};

void
TlsTransport::start_session()
{
	ssl_ = SSL_new(ctx_->ssl_ctx());
	if (ssl_ == nullptr || SSL_set_fd(ssl_, socket_->fd()) != 1)
		throw TransportError(openssl_error("cannot start a TLS session"));
	bool ip = is_ip_address(name_);
	/* SNI is only for names (RFC 6066). */
	if (!ip && SSL_set_tlsext_host_name(ssl_, name_.c_str()) != 1)
		throw TransportError(openssl_error("cannot set the TLS server name"));
	if (ctx_->settings().verify == TlsSettings::Verify::Full) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl_);
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name_.c_str())
					: X509_VERIFY_PARAM_set1_host(param, name_.c_str(), 0);
		if (ok != 1)
			throw TransportError(openssl_error("cannot set the TLS name to verify"));
	}
}

IoWait
TlsTransport::check(int rc, const char *what)
{
	int err = SSL_get_error(ssl_, rc);
	switch (err) {
	case SSL_ERROR_WANT_READ:
		return IoWait::Read;
	case SSL_ERROR_WANT_WRITE:
		return IoWait::Write;
	case SSL_ERROR_ZERO_RETURN:
		throw TransportError("the server closed the TLS connection");
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0)
			throw TransportError(std::string(what) + ": the server closed the connection");
		break;
	default:
		break;
	}
	long verify = SSL_get_verify_result(ssl_);
	if (!established_ && verify != X509_V_OK) {
		ERR_clear_error();
		throw TransportError(std::string("TLS certificate verification failed: ") +
							 X509_verify_cert_error_string(verify));
	}
	throw TransportError(openssl_error(what));
}

IoWait
TlsTransport::connect_step()
{
	if (established_)
		return IoWait::None;
	IoWait wait = socket_->connect_step();
	if (wait != IoWait::None)
		return wait;
	if (ssl_ == nullptr)
		start_session();
	ERR_clear_error();
	int rc = SSL_connect(ssl_);
	if (rc == 1) {
		established_ = true;
		return IoWait::None;
	}
	return check(rc, "TLS handshake failed");
}

size_t
TlsTransport::read(char *buf, size_t len, IoWait &wait)
{
	size_t n = 0;
	ERR_clear_error();
	int rc = SSL_read_ex(ssl_, buf, len, &n);
	if (rc == 1)
		return n;
	wait = check(rc, "cannot read over TLS");
	return 0;
}

size_t
TlsTransport::write(const char *buf, size_t len, IoWait &wait)
{
	size_t n = 0;
	ERR_clear_error();
	int rc = SSL_write_ex(ssl_, buf, len, &n);
	if (rc == 1)
		return n;
	wait = check(rc, "cannot write over TLS");
	return 0;
}

} // namespace

TlsContext::TlsContext(const TlsSettings &settings) : settings_(settings)
{
	ERR_clear_error();
	ctx_ = SSL_CTX_new(TLS_client_method());
	if (ctx_ == nullptr)
		throw TransportError(openssl_error("cannot create a TLS context"));
	try {
		SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
		/* Our output buffer may move between a partial write and its retry. */
		SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		if (settings.verify == TlsSettings::Verify::None)
			SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
		else {
			SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
			int ok = settings.ca_file.empty()
						 ? SSL_CTX_set_default_verify_paths(ctx_)
						 : SSL_CTX_load_verify_locations(ctx_, settings.ca_file.c_str(), nullptr);
			if (ok != 1)
				throw TransportError(openssl_error("cannot load cachebust.tls_ca_file"));
		}
		if (!settings.cert_file.empty() || !settings.key_file.empty()) {
			if (settings.cert_file.empty() || settings.key_file.empty())
				throw TransportError("cachebust.tls_cert_file and cachebust.tls_key_file must be set together");
			if (SSL_CTX_use_certificate_chain_file(ctx_, settings.cert_file.c_str()) != 1)
				throw TransportError(openssl_error("cannot load cachebust.tls_cert_file"));
			if (SSL_CTX_use_PrivateKey_file(ctx_, settings.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
				throw TransportError(openssl_error("cannot load cachebust.tls_key_file"));
			if (SSL_CTX_check_private_key(ctx_) != 1)
				throw TransportError(openssl_error("the TLS key does not match the certificate"));
		}
	} catch (...) {
		SSL_CTX_free(ctx_);
		throw;
	}
}

TlsContext::~TlsContext()
{
	SSL_CTX_free(ctx_);
}

std::unique_ptr<Transport>
open_tls_transport(std::unique_ptr<Transport> socket, std::shared_ptr<TlsContext> ctx,
				   const std::string &host)
{
	std::string name = ctx->settings().server_name.empty() ? host : ctx->settings().server_name;
	return std::make_unique<TlsTransport>(std::move(socket), std::move(ctx), std::move(name));
}

} // namespace cachebust
