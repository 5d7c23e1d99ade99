/* cachebust.clear()'s confirmation tokens: bound to role, database and
 * pattern, valid 60 s, used once; and the text clear(pattern) returns. */
#include "core/clear_tokens.hpp"

#include <memory>

#include <gtest/gtest.h>

using namespace cachebust;

namespace {

constexpr int64_t kNow = 1000LL * 1000 * 1000;

struct Tokens : ::testing::Test {
	std::unique_ptr<ClearTokenTable> table = std::make_unique<ClearTokenTable>(); /* zeroed: all free */
	uint64_t count = 0;

	ClearRedeem redeem(const std::string &token, uint32_t role = 10, uint32_t db = 5,
					   const std::string &pattern = "app:user:*", int64_t now = kNow + 1000)
	{
		return clear_token_redeem(*table, token, role, db, pattern, now, count);
	}
};

} // namespace

TEST_F(Tokens, ATokenIsUsedOnceByItsRoleForItsPattern)
{
	ASSERT_TRUE(clear_token_issue(*table, "aaaa", 10, 5, "app:user:*", 1234, kNow));
	EXPECT_EQ(redeem("aaaa", 11), ClearRedeem::OtherRole);
	EXPECT_EQ(redeem("aaaa", 10, 6), ClearRedeem::OtherDatabase);
	EXPECT_EQ(redeem("aaaa", 10, 5, "app:*"), ClearRedeem::OtherPattern);
	EXPECT_EQ(redeem("aaab"), ClearRedeem::Unknown);
	EXPECT_EQ(redeem(""), ClearRedeem::Unknown);
	EXPECT_EQ(redeem("aaaa"), ClearRedeem::Ok) << "a refused attempt does not use the token up";
	EXPECT_EQ(count, 1234u);
	EXPECT_EQ(redeem("aaaa"), ClearRedeem::Unknown) << "used once";
}

TEST_F(Tokens, ATokenExpiresAfterSixtySeconds)
{
	ASSERT_TRUE(clear_token_issue(*table, "aaaa", 10, 5, "app:user:*", 1, kNow));
	ASSERT_TRUE(clear_token_issue(*table, "bbbb", 10, 5, "app:user:*", 1, kNow));
	EXPECT_EQ(redeem("aaaa", 10, 5, "app:user:*", kNow + kClearTokenLifetimeUs - 1), ClearRedeem::Ok);
	EXPECT_EQ(redeem("bbbb", 10, 5, "app:user:*", kNow + kClearTokenLifetimeUs), ClearRedeem::Expired);
	EXPECT_EQ(redeem("bbbb", 10, 5, "app:user:*", kNow + kClearTokenLifetimeUs), ClearRedeem::Unknown);
	EXPECT_EQ(redeem("bbbb", 11, 5, "app:user:*", kNow + kClearTokenLifetimeUs), ClearRedeem::Unknown);
}

TEST_F(Tokens, AFullTableReusesTheOldestExpiredEntry)
{
	for (size_t i = 0; i < kClearTokens; i++)
		ASSERT_TRUE(clear_token_issue(*table, "t" + std::to_string(i), 10, 5, "p*", i, kNow + static_cast<int64_t>(i)));
	EXPECT_FALSE(clear_token_issue(*table, "new", 10, 5, "p*", 0, kNow + 100)) << "every token still valid";
	int64_t later = kNow + kClearTokenLifetimeUs + 1; /* t0 and t1 have expired */
	ASSERT_TRUE(clear_token_issue(*table, "new", 10, 5, "p*", 0, later));
	EXPECT_EQ(clear_token_redeem(*table, "t0", 10, 5, "p*", later, count), ClearRedeem::Unknown) << "t0 was replaced";
	EXPECT_EQ(clear_token_redeem(*table, "t1", 10, 5, "p*", later, count), ClearRedeem::Expired);
	EXPECT_EQ(clear_token_redeem(*table, "new", 10, 5, "p*", later, count), ClearRedeem::Ok);
}

TEST_F(Tokens, PatternsAreComparedWhole)
{
	std::string binary("app:\0*", 6);
	ASSERT_TRUE(clear_token_issue(*table, "aaaa", 10, 5, binary, 2, kNow));
	EXPECT_EQ(redeem("aaaa", 10, 5, "app:"), ClearRedeem::OtherPattern);
	EXPECT_EQ(redeem("aaaa", 10, 5, binary), ClearRedeem::Ok);
	EXPECT_FALSE(clear_token_issue(*table, "toolongtoolongtoo", 10, 5, "p*", 0, kNow));
}

TEST(ClearText, TheTokenComesFirstAndTheCountSaysIfItIsBounded)
{
	uint8_t random[8] = {0x3f, 0x9a, 0x00, 0xff, 0x12, 0x34, 0xab, 0xcd};
	std::string token = clear_token_text(random);
	EXPECT_EQ(token, "3f9a00ff1234abcd");
	EXPECT_EQ(clear_confirmation(token, 1234, ClearCountBound::Exact, "app:user:*", "'user:*'", 10),
			  "3f9a00ff1234abcd: 1234 keys match \"app:user:*\"; confirm within 60 s: "
			  "SELECT cachebust.clear('user:*', '3f9a00ff1234abcd')");
	EXPECT_EQ(clear_confirmation(token, 1, ClearCountBound::Exact, "a:*", "'*'", 10).substr(0, 37),
			  "3f9a00ff1234abcd: 1 key matches \"a:*\"");
	EXPECT_EQ(clear_confirmation(token, 100000, ClearCountBound::Limit, "a:*", "'*'", 10).substr(0, 75),
			  "3f9a00ff1234abcd: at least 100000 keys match \"a:*\" (counting stopped there)");
	EXPECT_NE(clear_confirmation(token, 5, ClearCountBound::Time, "a:*", "'*'", 10).find("at least 5 keys match \"a:*\" (counting stopped after 10 s)"),
			  std::string::npos);
}
