/*
 * row_refresh_test.cpp — per-row refresh (watch(..., refresh => ...)): the
 * composite key a Refresh target carries, the trigger option that makes
 * it, and the removal that stands in for it.
 */
#include <gtest/gtest.h>

#include "core/batch_codec.hpp"
#include "core/delivery/refresh_waits.hpp"
#include "core/row_refresh.hpp"
#include "core/template.hpp"

using namespace cachebust;
using namespace std::string_literals;

TEST(RowRefreshKey, RoundTrip)
{
	std::string key = row_refresh_key("app:user:1:x", 42, {"1", "x"});
	EXPECT_EQ(key, "app:user:1:x\0"s "42\0"s "1\0x"s);
	std::string redis_key;
	uint32_t id = 0;
	std::vector<std::string> params;
	ASSERT_TRUE(parse_row_refresh_key(key, redis_key, id, params));
	EXPECT_EQ(redis_key, "app:user:1:x");
	EXPECT_EQ(id, 42u);
	EXPECT_EQ(params, (std::vector<std::string>{"1", "x"}));
}

TEST(RowRefreshKey, EmptyAndMissingParameters)
{
	std::string redis_key;
	uint32_t id = 0;
	std::vector<std::string> params{"stale"};
	ASSERT_TRUE(parse_row_refresh_key(row_refresh_key("k:", 7, {""}), redis_key, id, params));
	EXPECT_EQ(params, (std::vector<std::string>{""})) << "an empty text value is a parameter";
	ASSERT_TRUE(parse_row_refresh_key(row_refresh_key("k", 7, {}), redis_key, id, params));
	EXPECT_TRUE(params.empty()) << "a template without columns binds nothing";
	ASSERT_TRUE(parse_row_refresh_key(row_refresh_key("k", 7, {"", ""}), redis_key, id, params));
	EXPECT_EQ(params.size(), 2u);
}

TEST(RowRefreshKey, NotACompositeOrMalformed)
{
	std::string redis_key = "untouched";
	uint32_t id = 0;
	std::vector<std::string> params;
	EXPECT_FALSE(parse_row_refresh_key("app:dashboard", redis_key, id, params)) << "a materialized key";
	EXPECT_FALSE(parse_row_refresh_key("\0"s "1\0x"s, redis_key, id, params)) << "no Redis key";
	EXPECT_FALSE(parse_row_refresh_key("k\0"s, redis_key, id, params)) << "no id";
	EXPECT_FALSE(parse_row_refresh_key("k\0"s "x1\0a"s, redis_key, id, params));
	EXPECT_FALSE(parse_row_refresh_key("k\0"s "0\0a"s, redis_key, id, params));
	EXPECT_FALSE(parse_row_refresh_key("k\0"s "99999999999\0a"s, redis_key, id, params));
	EXPECT_EQ(redis_key, "untouched");
}

TEST(RowRefreshKey, RedisKeyOf)
{
	Target t;
	t.kind = TargetKind::Refresh;
	t.key = row_refresh_key("app:user:1", 3, {"1"});
	EXPECT_EQ(redis_key_of(t), "app:user:1");
	t.key = "app:dashboard";
	EXPECT_EQ(redis_key_of(t), "app:dashboard") << "a materialized key is its own Redis key";
	t.kind = TargetKind::Key;
	t.key = "plain";
	EXPECT_EQ(redis_key_of(t), "plain");
}

TEST(RowRefreshKey, RemovalOfACompositeRemovesTheRedisKey)
{
	Target t;
	t.kind = TargetKind::Refresh;
	t.database = 5;
	t.prefix_len = 4;
	t.immediate = true;
	t.key = row_refresh_key("app:user:1", 3, {"1"});
	Target removal = removal_of(t);
	EXPECT_EQ(removal.kind, TargetKind::Key);
	EXPECT_EQ(removal.key, "app:user:1");
	EXPECT_EQ(removal.prefix_len, 4u);
	EXPECT_TRUE(removal.immediate);
}

TEST(RowRefreshKey, TravelsThroughTheRing)
{
	Target t;
	t.kind = TargetKind::Refresh;
	t.database = 16384;
	t.prefix_len = 4;
	t.key = row_refresh_key("app:user:1", 3, {"1"});
	DecodedBatch batch;
	std::string ring = encode_targets({t}, 0);
	decode_batch(ring.data(), ring.size(), batch);
	ASSERT_EQ(batch.targets.size(), 1u);
	EXPECT_EQ(batch.targets[0].key, t.key);
	EXPECT_EQ(batch.targets[0].database, 16384u);
}

TEST(RowRefreshSpec, MakeRowRefresh)
{
	TriggerSpec spec = TriggerSpec::parse({"u:{b}:{a}", "refresh=9"});
	RowValues values{std::string_view("B"), std::string_view("A")};
	std::optional<Target> t = spec.targets[0].render(KeyPrefixes{"app:", "tag:"}, values, false);
	ASSERT_TRUE(t.has_value());
	make_row_refresh(*t, spec.refresh_id, 77, spec.refresh_slots, values, 1024);
	EXPECT_EQ(t->kind, TargetKind::Refresh);
	EXPECT_EQ(t->database, 77u);
	EXPECT_EQ(t->prefix_len, 4u);
	EXPECT_EQ(t->key, "app:u:B:A\0"s "9\0B\0A"s);

	/* Too long for a refresh request: stays a removal. */
	std::string long_value(600, 'x');
	RowValues long_values{std::string_view(long_value), std::string_view("A")};
	std::optional<Target> long_target = spec.targets[0].render(KeyPrefixes{"app:", "tag:"}, long_values, false);
	make_row_refresh(*long_target, spec.refresh_id, 77, spec.refresh_slots, long_values, 1024);
	EXPECT_EQ(long_target->kind, TargetKind::Key);
	EXPECT_EQ(long_target->key, "app:u:" + long_value + ":A");
}
