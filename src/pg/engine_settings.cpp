/*
 * engine_settings.cpp — see engine_settings.hpp.
 */
#include "pg/engine_settings.hpp"

#include <string>

#include "pg/guc.hpp"

namespace cachebust::pg {

static std::string
setting(const char *value)
{
	return value != nullptr ? value : "";
}

EngineSettings
engine_settings_from_gucs()
{
	EngineSettings s;
	std::string url = setting(guc_redis_url);
	s.configured = !url.empty();
	if (s.configured)
		s.url = RedisUrl::parse(url); /* the check hook accepted it */
	if (s.url.sentinel_password.empty())
		s.url.sentinel_password = setting(guc_sentinel_password);
	s.tls.ca_file = setting(guc_tls_ca_file);
	s.tls.cert_file = setting(guc_tls_cert_file);
	s.tls.key_file = setting(guc_tls_key_file);
	s.tls.server_name = setting(guc_tls_server_name);
	s.tls.verify = guc_tls_verify == TLS_VERIFY_NONE ? TlsSettings::Verify::None
				   : guc_tls_verify == TLS_VERIFY_CA ? TlsSettings::Verify::Ca
													 : TlsSettings::Verify::Full;
	s.connect_timeout_ms = guc_connect_timeout_ms;
	s.command_timeout_ms = guc_command_timeout_ms;
	s.retry_max_ms = guc_retry_max_ms;
	s.tag_depth = guc_tag_depth;
	s.publish_channel = setting(guc_publish_channel);
	s.publish_sharded = guc_publish_sharded;
	s.max_pending = static_cast<size_t>(guc_max_pending);
	s.failover_repeat_ms = guc_failover_repeat_ms;
	return s;
}

} // namespace cachebust::pg
