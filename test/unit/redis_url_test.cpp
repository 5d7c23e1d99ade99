/* Unit tests: cachebust.redis_url parsing, redaction and log redaction. */
#include "core/redis/url.hpp"

#include <gtest/gtest.h>

using namespace cachebust;

namespace {

std::string
error_of(const std::string &url)
{
	try {
		RedisUrl::parse(url);
	} catch (const RedisUrlError &e) {
		return e.what();
	}
	return "(no error)";
}

} // namespace

TEST(RedisUrl, DefaultsAndParts)
{
	RedisUrl u = RedisUrl::parse("redis://127.0.0.1:6379/0");
	EXPECT_EQ(u.transport, RedisUrl::Transport::Tcp);
	EXPECT_EQ(u.topology, RedisUrl::Topology::Single);
	EXPECT_FALSE(u.tls);
	ASSERT_EQ(u.hosts.size(), 1u);
	EXPECT_EQ(u.hosts[0].host, "127.0.0.1");
	EXPECT_EQ(u.hosts[0].port, 6379);
	EXPECT_EQ(u.db, 0);
	EXPECT_TRUE(u.user.empty());
	EXPECT_TRUE(u.password.empty());

	u = RedisUrl::parse("redis://localhost");
	EXPECT_EQ(u.hosts[0].host, "localhost");
	EXPECT_EQ(u.hosts[0].port, 6379);

	u = RedisUrl::parse("rediss://app:p%40ss%3Aword@cache.internal:6380/5");
	EXPECT_TRUE(u.tls);
	EXPECT_EQ(u.user, "app");
	EXPECT_EQ(u.password, "p@ss:word");
	EXPECT_EQ(u.hosts[0].host, "cache.internal");
	EXPECT_EQ(u.hosts[0].port, 6380);
	EXPECT_EQ(u.db, 5);

	u = RedisUrl::parse("redis://:only-password@h/");
	EXPECT_TRUE(u.user.empty());
	EXPECT_EQ(u.password, "only-password");

	u = RedisUrl::parse("redis://u:p@ss@h/1");
	EXPECT_EQ(u.password, "p@ss") << "the userinfo ends at the last @";

	u = RedisUrl::parse("redis://[::1]:7000/2");
	EXPECT_EQ(u.hosts[0].host, "::1");
	EXPECT_EQ(u.hosts[0].port, 7000);
}

TEST(RedisUrl, SentinelAndCluster)
{
	RedisUrl s = RedisUrl::parse("redis-sentinel://app:pw@10.0.0.1,10.0.0.2:26380,[::1]/mymaster/3?sentinel_password=s%2Fp");
	EXPECT_EQ(s.topology, RedisUrl::Topology::Sentinel);
	ASSERT_EQ(s.hosts.size(), 3u);
	EXPECT_EQ(s.hosts[0].port, 26379) << "sentinels default to 26379";
	EXPECT_EQ(s.hosts[1].port, 26380);
	EXPECT_EQ(s.hosts[2].host, "::1");
	EXPECT_EQ(s.service, "mymaster");
	EXPECT_EQ(s.db, 3);
	EXPECT_EQ(s.password, "pw");
	EXPECT_EQ(s.sentinel_password, "s/p");
	EXPECT_TRUE(RedisUrl::parse("rediss-sentinel://h/m").tls);
	EXPECT_NE(error_of("redis-sentinel://h").find("name of the service"), std::string::npos);
	EXPECT_NE(error_of("redis-sentinel://h/m?x=1").find("sentinel_password"), std::string::npos);

	RedisUrl c = RedisUrl::parse("redis-cluster://u:pw@127.0.0.1:7000,127.0.0.1:7001");
	EXPECT_EQ(c.topology, RedisUrl::Topology::Cluster);
	ASSERT_EQ(c.hosts.size(), 2u);
	EXPECT_EQ(c.hosts[1].port, 7001);
	EXPECT_TRUE(RedisUrl::parse("rediss-cluster://h:1").tls);
	EXPECT_NE(error_of("redis-cluster://h:1/2").find("only database 0"), std::string::npos);
	EXPECT_NE(error_of("redis://a,b").find("several hosts"), std::string::npos);
	/* Error texts are safe to log as they are: they hold no URL the log hook would rewrite. */
	for (const char *url : {"http://h", "redis-sentinel://h", "redis://a,b", "redis-sentinel://h/m?x=1"})
		EXPECT_FALSE(mentions_redis_url(error_of(url))) << error_of(url);
}

TEST(RedisUrl, UnixSockets)
{
	RedisUrl u = RedisUrl::parse("unix:///var/run/redis/redis.sock?db=3");
	EXPECT_EQ(u.transport, RedisUrl::Transport::Unix);
	EXPECT_EQ(u.socket_path, "/var/run/redis/redis.sock");
	EXPECT_EQ(u.db, 3);
	EXPECT_EQ(RedisUrl::parse("unix:///tmp/r.sock").db, 0);
	EXPECT_NE(error_of("unix://relative.sock").find("absolute path"), std::string::npos);
	EXPECT_NE(error_of("unix:///tmp/r.sock?timeout=1").find("db=N"), std::string::npos);
}

TEST(RedisUrl, ClearErrors)
{
	EXPECT_NE(error_of("http://h").find("unknown URL scheme"), std::string::npos);
	EXPECT_NE(error_of("").find("unknown URL scheme"), std::string::npos);
	EXPECT_NE(error_of("redis://").find("no host"), std::string::npos);
	EXPECT_NE(error_of("redis://h:").find("empty port"), std::string::npos);
	EXPECT_NE(error_of("redis://h:0").find("port 0 is out of range"), std::string::npos);
	EXPECT_NE(error_of("redis://h:70000").find("out of range"), std::string::npos);
	EXPECT_NE(error_of("redis://h:abc").find("invalid port (not a number)"), std::string::npos);
	EXPECT_NE(error_of("redis://h/x").find("invalid database number"), std::string::npos);
	EXPECT_NE(error_of("redis://h/-1").find("invalid database number"), std::string::npos);
	EXPECT_NE(error_of("redis://u:p%zz@h").find("%-escape in the password"), std::string::npos);
	EXPECT_NE(error_of("redis://[::1").find("unterminated ["), std::string::npos);
	EXPECT_NE(error_of("redis://h?x=1").find("no ?parameters"), std::string::npos);
}

/* A mistyped URL may hold the password where a port or a database was expected. */
TEST(RedisUrl, ErrorsNeverRepeatTheUrl)
{
	for (const char *url : {"redis://u:hunter2@h:abc", "redis://u:hunter2@h/zz", "redis://u:hunter2@:1",
							"redis://user:hunter2/0", "redis://u:hun/ter2@h", "redis://hunter2:hunter2x"}) {
		std::string err = error_of(url);
		EXPECT_NE(err, "(no error)") << url;
		EXPECT_EQ(err.find("hunter2"), std::string::npos) << err;
		EXPECT_EQ(err.find("ter2"), std::string::npos) << err;
	}
}

TEST(RedisUrl, Redacted)
{
	EXPECT_EQ(RedisUrl::parse("redis://app:hunter2@h:6380/2").redacted(), "redis://app:***@h:6380/2");
	EXPECT_EQ(RedisUrl::parse("redis://:hunter2@h").redacted(), "redis://:***@h:6379/0");
	EXPECT_EQ(RedisUrl::parse("redis://h").redacted(), "redis://h:6379/0");
	EXPECT_EQ(RedisUrl::parse("redis://[::1]:1/0").redacted(), "redis://[::1]:1/0");
	EXPECT_EQ(RedisUrl::parse("unix:///tmp/r.sock?db=4").redacted(), "unix:///tmp/r.sock?db=4");
	EXPECT_EQ(RedisUrl::parse("rediss-sentinel://:pw@a,b:2/m?sentinel_password=x").redacted(),
			  "rediss-sentinel://:***@a:26379,b:2/m/0?sentinel_password=***");
	EXPECT_EQ(RedisUrl::parse("redis-cluster://u:pw@a:1,b:2").redacted(), "redis-cluster://u:***@a:1,b:2");
}

TEST(RedisUrl, RedactsUrlsInFreeText)
{
	EXPECT_EQ(redact_redis_urls("parameter \"cachebust.redis_url\" changed to \"redis://u:pw@h:1/2\""),
			  "parameter \"cachebust.redis_url\" changed to \"redis://u:***@h:1/2\"");
	EXPECT_EQ(redact_redis_urls("redis://host:6379/0 mail me@example"), "redis://host:6379/0 mail me@example");
	EXPECT_EQ(redact_redis_urls("no urls here"), "no urls here");
	EXPECT_EQ(redact_redis_urls("a redis://a:b@c/1 b"), "a redis://a:***@c:6379/1 b");
	EXPECT_EQ(redact_redis_urls("ALTER SYSTEM SET cachebust.redis_url = 'rediss-cluster://u:p@h:1,h:2';"),
			  "ALTER SYSTEM SET cachebust.redis_url = 'rediss-cluster://u:***@h:1,h:2';");
}

/* Passwords may hold anything a URL allows: every such character is covered. */
TEST(RedisUrl, RedactionHoldsForHostilePasswords)
{
	const char *secret = "S3cr'e\"t@:/% x";
	/* As a user would write it in postgresql.conf ('' for '), %-encoding only what the URL needs. */
	std::string encoded = "S3cr'e\"t@:%2F%25 x";
	std::string url = "redis://app:" + encoded + "@127.0.0.1:6379/0";
	ASSERT_EQ(RedisUrl::parse(url).password, secret);

	std::string sql_literal;
	for (char c : url) {
		sql_literal.push_back(c);
		if (c == '\'')
			sql_literal.push_back('\'');
	}
	std::vector<std::string> texts = {
		"parameter \"cachebust.redis_url\" changed to \"" + url + "\"",
		"statement: ALTER SYSTEM SET cachebust.redis_url = '" + sql_literal + "';",
		"statement: ALTER SYSTEM SET cachebust.redis_url TO '" + sql_literal + "'",
		"invalid value for parameter \"cachebust.redis_url\": \"redis://app:" + encoded + "@h:xx/0\"",
		"redis://user:" + encoded + "/0 then more text",
	};
	for (const std::string &text : texts) {
		std::string out = redact_redis_urls(text);
		EXPECT_EQ(out.find("S3cr"), std::string::npos) << out;
		EXPECT_EQ(out.find("x@"), std::string::npos) << out;
	}
}
