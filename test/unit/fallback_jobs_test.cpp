/* Unit tests: fallback jobs and the commits they left uncovered. */
#include "core/delivery/fallback.hpp"

#include <gtest/gtest.h>

using namespace cachebust;

/* A range a previous worker left uncovered stays uncovered in the new one
 * until a fallback that can cover it runs (issue 21, item 5). */
TEST(FallbackJobsTest, AdoptedRangesStayUncoveredUntilARetryCoversThem)
{
	FallbackJobs jobs;
	jobs.adopt_uncovered(3, 7, {"", "app:"}, false);
	jobs.adopt_uncovered(10, 10, {"", "app:"}, false);
	ASSERT_EQ(jobs.uncovered().size(), 2u);
	EXPECT_EQ(jobs.uncovered()[0].lo, 3u);
	EXPECT_EQ(jobs.uncovered()[0].hi, 7u);
	EXPECT_EQ(jobs.uncovered_batches(), 6u);
	EXPECT_FALSE(jobs.busy()) << "nothing is sent for an adopted range";

	/* The same range again (say the previous run's [0, 0] twice) is kept once. */
	jobs.adopt_uncovered(3, 7, {"app:"}, false);
	EXPECT_EQ(jobs.uncovered().size(), 2u);

	std::vector<FallbackJobs::Job> retry = jobs.to_retry();
	ASSERT_EQ(retry.size(), 2u);
	EXPECT_EQ(retry[0].prefixes, (std::vector<std::string>{"", "app:"}));

	/* Under "prefix" the empty prefix is still refused: the range stays uncovered. */
	FallbackPlan refused = plan_fallback(FallbackMode::Prefix, retry[0].prefixes, retry[0].incomplete);
	EXPECT_FALSE(refused.covers_everything());

	/* FLUSHDB covers it once the job settles without failing. */
	FallbackPlan flush = plan_fallback(FallbackMode::FlushDb, retry[0].prefixes, retry[0].incomplete);
	uint32_t id = jobs.start(flush, retry[0].prefixes, retry[0].incomplete, retry[0].lo, retry[0].hi, true);
	ASSERT_NE(id, 0u);
	EXPECT_EQ(jobs.uncovered().size(), 2u) << "uncovered until the retry is done";
	jobs.settle(SeqSet()); /* nothing held any more */
	ASSERT_EQ(jobs.uncovered().size(), 1u);
	EXPECT_EQ(jobs.uncovered()[0].lo, 10u);
}

/* Prefixes unknown (the registry overflowed, or none known): only a fallback
 * that covers every prefix can cover the range. */
TEST(FallbackJobsTest, AdoptedRangesWithUnknownPrefixesNeedFlushDb)
{
	FallbackJobs jobs;
	jobs.adopt_uncovered(0, 0, {}, true);
	EXPECT_EQ(jobs.uncovered_batches(), 1u);
	FallbackJobs::Job u = jobs.to_retry().at(0);
	EXPECT_FALSE(plan_fallback(FallbackMode::Prefix, u.prefixes, u.incomplete).covers_everything());
	EXPECT_FALSE(plan_fallback(FallbackMode::Generation, u.prefixes, u.incomplete).covers_everything());
	EXPECT_TRUE(plan_fallback(FallbackMode::FlushDb, u.prefixes, u.incomplete).covers_everything());
}
