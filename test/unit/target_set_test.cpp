/* Unit tests: merging equal targets in a TargetSet keeps the stronger delivery. */
#include "core/target_set.hpp"

#include <gtest/gtest.h>

using namespace cachebust;

namespace {

Target
tag(const char *key, uint8_t delivery, uint8_t depth = 0)
{
	Target t;
	t.kind = TargetKind::Tag;
	t.key = key;
	t.delivery = delivery;
	t.depth = depth;
	return t;
}

/* The delivery flags the set keeps after inserting a then b (one target). */
uint8_t
merged(Target a, Target b)
{
	TargetSet set;
	set.insert(std::move(a), 1);
	EXPECT_FALSE(set.insert(std::move(b), 2));
	EXPECT_EQ(set.size(), 1u);
	return set.targets()[0].delivery;
}

} // namespace

/* A tag reached beyond tag_depth (keep its sets) and the same tag
 * invalidated directly: the direct invalidation must not be swallowed. */
TEST(TargetSet, DirectTagIsNotSwallowedByADepthCappedOne)
{
	EXPECT_EQ(merged(tag("tag:t", kDeliverKeepSets, 3), tag("tag:t", 0)), 0);
	EXPECT_EQ(merged(tag("tag:t", 0), tag("tag:t", kDeliverKeepSets, 3)), 0);

	TargetSet set;
	set.insert(tag("tag:t", kDeliverKeepSets, 3), 1);
	set.insert(tag("tag:t", 0, 0), 2);
	EXPECT_EQ(set.targets()[0].depth, 0) << "the shallower tag expands further";
}

/* Restrictions hold only when both targets have them; extra steps are kept
 * when either needs them. */
TEST(TargetSet, EachDeliveryFlagMergesTowardsTheStrongerDelivery)
{
	/* A SCAN-matched tag (sets only) and a capped member (keep sets): together, pop everything. */
	EXPECT_EQ(merged(tag("t", kDeliverSetsOnly), tag("t", kDeliverKeepSets)), 0);
	EXPECT_EQ(merged(tag("t", kDeliverSetsOnly), tag("t", kDeliverSetsOnly)), kDeliverSetsOnly);
	EXPECT_EQ(merged(tag("t", kDeliverKeepSets), tag("t", kDeliverKeepSets)), kDeliverKeepSets);
	EXPECT_EQ(merged(tag("t", kDeliverSetsOnly), tag("t", 0)), 0);

	/* A substitute's refusal was counted already; a real target's was not. */
	EXPECT_EQ(merged(tag("k", kDeliverAlone | kDeliverSubstitute), tag("k", 0)), kDeliverAlone);
	EXPECT_EQ(merged(tag("k", kDeliverSubstitute), tag("k", kDeliverSubstitute)), kDeliverSubstitute);

	/* Sent alone, or after ASKING, if either needs it. */
	EXPECT_EQ(merged(tag("k", 0), tag("k", kDeliverAlone)), kDeliverAlone);
	EXPECT_EQ(merged(tag("k", kDeliverAsking | kDeliverAlone), tag("k", kDeliverKeepSets)),
			  kDeliverAsking | kDeliverAlone);
}

/* The same merge when the set was adopted whole and indexed later. */
TEST(TargetSet, AdoptedTargetsMergeFlagsToo)
{
	TargetSet set;
	std::vector<Target> batch;
	batch.push_back(tag("tag:a", kDeliverKeepSets, 3));
	batch.push_back(tag("tag:b", 0));
	set.insert_distinct(std::move(batch), 1);
	EXPECT_FALSE(set.insert(tag("tag:a", 0), 2));
	for (const Target &t : set.targets())
		EXPECT_EQ(t.delivery, 0) << t.key;
}
