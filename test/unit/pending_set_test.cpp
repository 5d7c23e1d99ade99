/* Unit tests: deduplication and savepoint semantics of the pending set. */
#include "core/pending_set.hpp"

#include <algorithm>
#include <random>

#include <gtest/gtest.h>

using namespace cachebust;

namespace {

Target
key(const std::string &k, bool immediate = false)
{
	Target t;
	t.key = k;
	t.immediate = immediate;
	return t;
}

std::vector<std::string>
keys_of(const PendingSet &set)
{
	std::vector<std::string> out;
	for (const auto &e : set.entries())
		out.push_back(e.target.key);
	return out;
}

using Keys = std::vector<std::string>;

} // namespace

TEST(PendingSet, DeduplicatesInFirstInsertionOrder)
{
	PendingSet set;
	EXPECT_TRUE(set.add(key("a"), 1));
	EXPECT_TRUE(set.add(key("b"), 1));
	EXPECT_FALSE(set.add(key("a"), 1));
	EXPECT_EQ(keys_of(set), (Keys{"a", "b"}));
}

TEST(PendingSet, KindAndGlobMakeDistinctTargets)
{
	PendingSet set;
	Target tag = key("x");
	tag.kind = TargetKind::Tag;
	Target glob = key("x");
	glob.glob = true;
	EXPECT_TRUE(set.add(key("x"), 1));
	EXPECT_TRUE(set.add(tag, 1));
	EXPECT_TRUE(set.add(glob, 1));
	EXPECT_EQ(set.size(), 3u);
}

TEST(PendingSet, RollbackToSavepointDropsExactlyItsAdditions)
{
	PendingSet set;
	set.add(key("a"), 1);
	set.add(key("b"), 2);
	set.add(key("a"), 2); /* already buffered by the parent */
	set.add(key("c"), 3);
	set.abort_subtransaction(3);
	EXPECT_EQ(keys_of(set), (Keys{"a", "b"}));
	set.abort_subtransaction(2);
	EXPECT_EQ(keys_of(set), (Keys{"a"}));
	/* the dropped targets can be added again */
	EXPECT_TRUE(set.add(key("b"), 2));
}

TEST(PendingSet, ReleaseHandsEntriesToTheParent)
{
	PendingSet set;
	set.add(key("a"), 1);
	set.add(key("b"), 2);
	set.add(key("c"), 3);
	set.commit_subtransaction(3); /* c now belongs to level 2 */
	EXPECT_EQ(keys_of(set), (Keys{"a", "b", "c"}));
	set.abort_subtransaction(2); /* rolls back b and the released c */
	EXPECT_EQ(keys_of(set), (Keys{"a"}));
}

TEST(PendingSet, ReleaseThenNewSavepointAtSameLevel)
{
	PendingSet set;
	set.add(key("a"), 2);
	set.commit_subtransaction(2); /* a → level 1 */
	set.add(key("b"), 2);		  /* a new savepoint at level 2 */
	set.abort_subtransaction(2);
	EXPECT_EQ(keys_of(set), (Keys{"a"}));
	EXPECT_EQ(set.entries()[0].nest_level, 1);
}

TEST(PendingSet, ImmediateIsMergedIntoAnExistingEntry)
{
	PendingSet set;
	set.add(key("a"), 1);
	EXPECT_FALSE(set.any_immediate());
	EXPECT_FALSE(set.add(key("a", true), 1));
	EXPECT_TRUE(set.any_immediate());
	EXPECT_TRUE(set.entries()[0].target.immediate);
}

TEST(PendingSet, ClearEmptiesEverything)
{
	PendingSet set;
	for (int i = 0; i < 1000; i++)
		set.add(key("k" + std::to_string(i)), 1 + i % 3);
	EXPECT_EQ(set.size(), 1000u);
	set.clear();
	EXPECT_TRUE(set.empty());
	EXPECT_TRUE(set.add(key("k1"), 1));
}

TEST(PendingSet, ManyEntriesSurviveRehashing)
{
	PendingSet set;
	for (int i = 0; i < 20000; i++)
		set.add(key("k" + std::to_string(i % 5000)), 1);
	EXPECT_EQ(set.size(), 5000u);
	set.abort_subtransaction(1);
	EXPECT_TRUE(set.empty());
}

TEST(PendingSet, MatchesAReferenceModelThroughSavepoints)
{
	/* Random adds, savepoints, releases and rollbacks against a plain model:
	 * the index must find every entry, whatever the probing and deletions. */
	std::mt19937 rng(42);
	PendingSet set;
	std::vector<std::pair<std::string, int>> model; /* key, level, in order */
	int level = 1;
	for (int step = 0; step < 20000; step++) {
		int action = static_cast<int>(rng() % 100);
		if (action < 80) {
			std::string k = "k" + std::to_string(rng() % 3000);
			bool known = std::any_of(model.begin(), model.end(), [&](const auto &m) { return m.first == k; });
			ASSERT_EQ(set.add(key(k), level), !known) << k;
			if (!known)
				model.emplace_back(k, level);
		} else if (action < 88) {
			level++; /* SAVEPOINT */
		} else if (action < 94 && level > 1) {
			set.commit_subtransaction(level); /* RELEASE */
			for (auto &m : model)
				if (m.second >= level)
					m.second = level - 1;
			level--;
		} else if (level > 1) {
			set.abort_subtransaction(level); /* ROLLBACK TO and RELEASE */
			while (!model.empty() && model.back().second >= level)
				model.pop_back();
			level--;
		}
		ASSERT_EQ(set.size(), model.size());
	}
	Keys expected;
	for (const auto &m : model)
		expected.push_back(m.first);
	EXPECT_EQ(keys_of(set), expected);
	for (const auto &m : model)
		EXPECT_FALSE(set.add(key(m.first), level)) << m.first;
}
