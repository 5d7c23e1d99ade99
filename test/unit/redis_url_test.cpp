/* Unit tests: cachebust.redis_url parsing, redaction and log redaction. */
#include "core/redis_url.hpp"

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
	EXPECT_EQ(u.host, "127.0.0.1");
	EXPECT_EQ(u.port, 6379);
	EXPECT_EQ(u.db, 0);
	EXPECT_TRUE(u.user.empty());
	EXPECT_TRUE(u.password.empty());

	u = RedisUrl::parse("redis://localhost");
	EXPECT_EQ(u.host, "localhost");
	EXPECT_EQ(u.port, 6379);
	EXPECT_EQ(u.db, 0);

	u = RedisUrl::parse("redis://app:p%40ss%3Aword@cache.internal:6380/5");
	EXPECT_EQ(u.user, "app");
	EXPECT_EQ(u.password, "p@ss:word");
	EXPECT_EQ(u.host, "cache.internal");
	EXPECT_EQ(u.port, 6380);
	EXPECT_EQ(u.db, 5);

	u = RedisUrl::parse("redis://:only-password@h/");
	EXPECT_TRUE(u.user.empty());
	EXPECT_EQ(u.password, "only-password");

	u = RedisUrl::parse("redis://[::1]:7000/2");
	EXPECT_EQ(u.host, "::1");
	EXPECT_EQ(u.port, 7000);
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
	EXPECT_NE(error_of("http://h").find("must start with redis:// or unix://"), std::string::npos);
	EXPECT_NE(error_of("redis://").find("no host"), std::string::npos);
	EXPECT_NE(error_of("redis://h:").find("empty port"), std::string::npos);
	EXPECT_NE(error_of("redis://h:0").find("port 0 is out of range"), std::string::npos);
	EXPECT_NE(error_of("redis://h:70000").find("out of range"), std::string::npos);
	EXPECT_NE(error_of("redis://h:abc").find("invalid port \"abc\""), std::string::npos);
	EXPECT_NE(error_of("redis://h/x").find("invalid database number"), std::string::npos);
	EXPECT_NE(error_of("redis://h/-1").find("invalid database number"), std::string::npos);
	EXPECT_NE(error_of("redis://u:p%zz@h").find("%-escape in the password"), std::string::npos);
	EXPECT_NE(error_of("redis://[::1").find("unterminated ["), std::string::npos);
}

TEST(RedisUrl, ErrorsNeverContainThePassword)
{
	for (const char *url : {"redis://u:hunter2@h:abc", "redis://u:hunter2@h/zz", "redis://u:hunter2@:1"}) {
		std::string err = error_of(url);
		EXPECT_NE(err, "(no error)") << url;
		EXPECT_EQ(err.find("hunter2"), std::string::npos) << err;
	}
}

TEST(RedisUrl, Redacted)
{
	EXPECT_EQ(RedisUrl::parse("redis://app:hunter2@h:6380/2").redacted(), "redis://app:***@h:6380/2");
	EXPECT_EQ(RedisUrl::parse("redis://:hunter2@h").redacted(), "redis://:***@h:6379/0");
	EXPECT_EQ(RedisUrl::parse("redis://h").redacted(), "redis://h:6379/0");
	EXPECT_EQ(RedisUrl::parse("redis://[::1]:1/0").redacted(), "redis://[::1]:1/0");
	EXPECT_EQ(RedisUrl::parse("unix:///tmp/r.sock?db=4").redacted(), "unix:///tmp/r.sock?db=4");
}

TEST(RedisUrl, RedactsPasswordsInFreeText)
{
	EXPECT_EQ(redact_redis_passwords("parameter \"cachebust.redis_url\" changed to \"redis://u:pw@h:1/2\""),
			  "parameter \"cachebust.redis_url\" changed to \"redis://u:***@h:1/2\"");
	EXPECT_EQ(redact_redis_passwords("SET x = 'redis://:pw@h'; -- and redis://a:b@c/1"),
			  "SET x = 'redis://:***@h'; -- and redis://a:***@c/1");
	EXPECT_EQ(redact_redis_passwords("redis://u:p@ss@h/0"), "redis://u:***@h/0");
	EXPECT_EQ(redact_redis_passwords("redis://host:6379/0 mail me@example"), "redis://host:6379/0 mail me@example");
	EXPECT_EQ(redact_redis_passwords("no urls here"), "no urls here");
	EXPECT_TRUE(has_redis_password("x redis://u:p@h"));
	EXPECT_FALSE(has_redis_password("redis://user@h"));
	EXPECT_FALSE(has_redis_password("redis://h:1/0"));
}
