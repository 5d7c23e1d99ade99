/* Unit tests: capped exponential backoff with jitter. */
#include "core/backoff.hpp"

#include <gtest/gtest.h>

using namespace cachebust;

TEST(Backoff, GrowsExponentiallyWithinJitterBounds)
{
	Backoff b(100, 100000, 42);
	int expected_max = 100;
	for (int i = 0; i < 8; i++) {
		int d = b.next_delay_ms();
		EXPECT_GE(d, expected_max / 2) << "attempt " << i;
		EXPECT_LE(d, expected_max) << "attempt " << i;
		expected_max *= 2;
	}
	EXPECT_EQ(b.attempts(), 8);
}

TEST(Backoff, IsCapped)
{
	Backoff b(50, 5000, 1);
	for (int i = 0; i < 1000; i++) {
		int d = b.next_delay_ms();
		EXPECT_LE(d, 5000);
		EXPECT_GE(d, 25);
	}
	/* after many attempts the delay stays within [cap/2, cap] */
	int d = b.next_delay_ms();
	EXPECT_GE(d, 2500);
	b.set_cap(200);
	EXPECT_LE(b.next_delay_ms(), 200);
}

TEST(Backoff, ResetStartsOver)
{
	Backoff b(100, 10000, 7);
	for (int i = 0; i < 10; i++)
		b.next_delay_ms();
	b.reset();
	EXPECT_EQ(b.attempts(), 0);
	EXPECT_LE(b.next_delay_ms(), 100);
}

TEST(Backoff, JitterVaries)
{
	Backoff b(1000, 1000, 3);
	int first = b.next_delay_ms();
	bool varied = false;
	for (int i = 0; i < 50 && !varied; i++)
		varied = b.next_delay_ms() != first;
	EXPECT_TRUE(varied);
}
