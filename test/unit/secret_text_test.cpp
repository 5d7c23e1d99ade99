/* Unit tests: the secrets of cachebust's settings kept out of log text. */
#include "core/secret_text.hpp"

#include <gtest/gtest.h>

using namespace cachebust;

TEST(SecretText, PasswordSettingChangesKeepTheirShape)
{
	EXPECT_EQ(redact_secrets("parameter \"cachebust.sentinel_password\" changed to \"hunter2\""),
			  "parameter \"cachebust.sentinel_password\" changed to \"***\"");
	EXPECT_EQ(redact_secrets("parameter \"cachebust.sentinel_password\" removed from configuration file, reset to default"),
			  "parameter \"cachebust.sentinel_password\" [the rest is not shown: it may hold a password]");
}

TEST(SecretText, StatementsEndAfterThePasswordSettingsName)
{
	/* Every syntax a statement may give the value in. */
	const char *statements[] = {
		"statement: ALTER SYSTEM SET cachebust.sentinel_password = 'hunter2';",
		"statement: ALTER SYSTEM SET cachebust.sentinel_password TO hunter2",
		"statement: alter system set \"cachebust\".\"SENTINEL_PASSWORD\" = 'hunter2'",
		"statement: SELECT set_config('cachebust.sentinel_password', 'hunter2', false)",
		"invalid value for parameter \"cachebust.sentinel_password\": \"hunter2\"",
	};
	for (const char *s : statements) {
		std::string out = redact_secrets(s);
		EXPECT_EQ(out.find("hunter2"), std::string::npos) << out;
		EXPECT_NE(out.find("not shown"), std::string::npos) << out;
		EXPECT_TRUE(mentions_secret(s)) << s;
	}
	EXPECT_EQ(redact_secrets("statement: SHOW cachebust.sentinel_password"), "statement: SHOW cachebust.sentinel_password");
}

TEST(SecretText, RedisUrlsAreRedactedToo)
{
	EXPECT_EQ(redact_secrets("parameter \"cachebust.redis_url\" changed to \"redis://u:pw@h:1/2\""),
			  "parameter \"cachebust.redis_url\" changed to \"redis://u:***@h:1/2\"");
	/* A URL's own ?sentinel_password= is redacted as part of the URL, not as the setting. */
	EXPECT_EQ(redact_secrets("delivers to redis-sentinel://:pw@a:1/m?sentinel_password=hunter2 now"),
			  "delivers to redis-sentinel://:***@a:1/m/0?sentinel_password=*** now");
	std::string both = redact_secrets(
		"statement: ALTER SYSTEM SET cachebust.redis_url = 'redis://u:pw1@h/0'; ALTER SYSTEM SET cachebust.sentinel_password = 'pw2'");
	EXPECT_EQ(both.find("pw1"), std::string::npos) << both;
	EXPECT_EQ(both.find("pw2"), std::string::npos) << both;
}

TEST(SecretText, OtherTextIsUntouched)
{
	EXPECT_FALSE(mentions_secret("parameter \"cachebust.debounce_ms\" changed to \"20\""));
	EXPECT_EQ(redact_secrets("parameter \"cachebust.debounce_ms\" changed to \"20\""),
			  "parameter \"cachebust.debounce_ms\" changed to \"20\"");
	EXPECT_EQ(redact_secrets(""), "");
	EXPECT_EQ(redact_secrets("sentinel_passwor"), "sentinel_passwor");
}
