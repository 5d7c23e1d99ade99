/* The names of tag receipts: under the tag's key_prefix, in the tag's
 * cluster slot (a script may only touch keys of one slot), or none. */
#include "core/delivery/tag_script.hpp"

#include <algorithm>

#include <gtest/gtest.h>

#include "core/key_slot.hpp"
#include "redis_server.hpp"

using namespace cachebust;
using cachebust::test::RedisServer;

namespace {

bool
starts_with(const std::string &s, const std::string &prefix)
{
	return s.compare(0, prefix.size(), prefix) == 0;
}

/* The receipt of prefix + name, checked the way Redis Cluster would. */
void
expect_same_slot(const std::string &prefix, const std::string &name)
{
	std::string tag = prefix + name;
	TagReceipt r;
	ASSERT_TRUE(tag_receipt_keys(tag, prefix.size(), r)) << tag;
	EXPECT_EQ(key_slot(r.set), key_slot(tag)) << r.set;
	EXPECT_EQ(key_slot(r.owner), key_slot(tag)) << r.owner;
	EXPECT_TRUE(starts_with(r.set, prefix + "cachebust:")) << r.set;
	EXPECT_TRUE(starts_with(r.owner, prefix + "cachebust:")) << r.owner;
	EXPECT_NE(r.set, r.owner);
	EXPECT_NE(r.set, tag);
}

} // namespace

TEST(TagReceipt, SharesTheTagsSlotAndPrefix)
{
	expect_same_slot("", "tag:team:7");
	expect_same_slot("app:", "tag:team:7");
	expect_same_slot("app:", "tag:{team}:7");		  /* the tag's own hash tag */
	expect_same_slot("{tenant1}:", "tag:team:7");	  /* a prefix that pins a tenant to one slot */
	expect_same_slot("{tenant1}:", "tag:{team}:7");	  /* the first hash tag counts */
	expect_same_slot("app:", "tag:{{x}");			  /* a hash tag that starts with "{" */
	expect_same_slot("app:", "tag:{open");			  /* "{" without "}": no hash tag, still fine */
	expect_same_slot("app:", std::string("tag:\0\xff", 6)); /* binary */
	expect_same_slot("app:", std::string(8000, 'x'));
}

TEST(TagReceipt, DistinctTagsGetDistinctReceipts)
{
	TagReceipt a, b, c;
	ASSERT_TRUE(tag_receipt_keys("app:tag:{t}:1", 4, a));
	ASSERT_TRUE(tag_receipt_keys("app:tag:{t}:2", 4, b));
	ASSERT_TRUE(tag_receipt_keys("apx:tag:{t}:1", 4, c));
	EXPECT_NE(a.set, b.set);
	EXPECT_NE(a.owner, b.owner);
	EXPECT_NE(a.set, c.set);
	EXPECT_NE(a.set, b.owner);
}

TEST(TagReceipt, NoNameInTheSlotMeansNoReceipt)
{
	TagReceipt r;
	/* A "}" without a hash tag: our braces would hash less than the whole tag. */
	EXPECT_FALSE(tag_receipt_keys("app:tag:odd}name", 4, r));
	EXPECT_FALSE(tag_receipt_keys("app:tag:{}x", 4, r)) << "an empty hash tag counts as none";
	/* A prefix that opens a brace it does not close. */
	EXPECT_FALSE(tag_receipt_keys("ap{p:tag:team:7", 5, r));
	EXPECT_FALSE(tag_receipt_keys("app:", 10, r)) << "a prefix longer than the tag";
}

TEST(TagReceipt, AttemptIdsAreUnique)
{
	std::string a = new_tag_attempt_id();
	std::string b = new_tag_attempt_id();
	EXPECT_NE(a, b);
	EXPECT_FALSE(a.empty());
}

/* The script's protocol against a real Redis: who owns a receipt, what a
 * retry gets back, when a release removes it. */
class TagScriptTest : public ::testing::Test
{
  protected:
	void SetUp() override
	{
		admin.connect(server.url(), RedisTimeouts{});
		admin.command({"FLUSHALL"});
		ASSERT_TRUE(tag_receipt_keys(tag, 4, receipt));
	}

	Reply run(const std::string &mode, const std::string &attempt, const std::string &retry = "first")
	{
		return admin.command({"EVAL", kTagPopScript, "3", tag, receipt.set, receipt.owner, mode, attempt, "60000", retry});
	}

	static std::vector<std::string> members(const Reply &r)
	{
		std::vector<std::string> out;
		for (const Reply &m : r.elements.at(1).elements)
			out.push_back(m.str);
		std::sort(out.begin(), out.end());
		return out;
	}

	bool exists(const std::string &key) { return admin.command({"EXISTS", key}).integer == 1; }

	static RedisServer server;
	RedisClient admin;
	std::string tag = "app:tag:t";
	TagReceipt receipt;
};

RedisServer TagScriptTest::server;

TEST_F(TagScriptTest, ARetryGetsBackWhatTheLostAttemptTook)
{
	admin.command({"SADD", tag, "app:1", "app:2"});
	Reply lost = run("pop", "a1");
	EXPECT_EQ(lost.elements.at(0).integer, 1);
	EXPECT_FALSE(exists(tag));
	EXPECT_GT(admin.command({"PTTL", receipt.set}).integer, 0) << "a receipt always has a TTL";
	/* A fill after the pop goes into a new set; the retry takes it too. */
	admin.command({"SADD", tag, "app:3"});
	Reply retry = run("pop", "a2", "retry");
	EXPECT_EQ(members(retry), (std::vector<std::string>{"app:1", "app:2", "app:3"}));
	EXPECT_FALSE(exists(tag));
	/* A retry that finds no set still gets the receipt. */
	EXPECT_EQ(members(run("pop", "a3", "retry")).size(), 3u);
}

TEST_F(TagScriptTest, OnlyTheLastOwnerReleases)
{
	admin.command({"SADD", tag, "app:1"});
	run("pop", "a1");
	admin.command({"SADD", tag, "app:2"});
	EXPECT_EQ(members(run("pop", "a2")).size(), 2u) << "a pop returns all the receipt holds";
	run("release", "a1");
	EXPECT_TRUE(exists(receipt.set)) << "a1 no longer owns it: a2's reply may be lost";
	run("release", "a2");
	EXPECT_FALSE(exists(receipt.set));
	EXPECT_FALSE(exists(receipt.owner));
}

TEST_F(TagScriptTest, AFirstAttemptWithoutASetLeavesTheReceiptAlone)
{
	admin.command({"SADD", tag, "app:1"});
	run("pop", "a1");
	Reply again = run("pop", "a2");
	EXPECT_EQ(again.type, Reply::Type::Array);
	EXPECT_TRUE(again.elements.empty()) << "a cycle of nested tags ends here";
	EXPECT_EQ(admin.command({"GET", receipt.owner}).str, "a1");
	/* keep (beyond tag_depth) and sets (tag patterns) leave other things alone, as before */
	admin.command({"SET", "app:tag:s", "x"});
	EXPECT_EQ(admin.command({"EVAL", kTagPopScript, "1", "app:tag:s", "sets"}).integer, -2);
	EXPECT_EQ(admin.command({"EVAL", kTagPopScript, "1", "app:tag:s", "pop"}).integer, -1);
	EXPECT_FALSE(exists("app:tag:s"));
	admin.command({"SADD", "app:tag:k", "m"});
	EXPECT_EQ(admin.command({"EVAL", kTagPopScript, "1", "app:tag:k", "keep"}).integer, -3);
	EXPECT_TRUE(exists("app:tag:k"));
}
