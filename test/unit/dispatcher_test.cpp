/*
 * dispatcher_test.cpp — the worker's decisions, without PostgreSQL: windows
 * on the monotonic clock, progress, fallbacks for second sends.
 */
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "core/batch_codec.hpp"
#include "core/delivery/dispatcher.hpp"

using namespace cachebust;

namespace {

struct FakeHost : DispatcherHost {
	std::vector<LogLine> lines;
	PrefixList prefixes;
	void log(const LogLine &line) override { lines.push_back(line); }
	PrefixList registered_prefixes() override { return prefixes; }
	uint64_t wal_insert_lsn() override { return 1000; }
	StandbyReplay standby_replay(std::vector<std::string> &) override { return StandbyReplay{}; }
};

Target
key(const std::string &k, uint32_t prefix_len = 0)
{
	Target t;
	t.key = k;
	t.prefix_len = prefix_len;
	return t;
}

/* One committed batch as the ring holds it. */
std::string
batch(uint64_t seq, int64_t commit_time_us, std::vector<Target> targets)
{
	std::string b = encode_targets(targets, 0);
	stamp_batch(b.data(), seq, commit_time_us, 0);
	return b;
}

DispatcherSettings
settings(FallbackMode mode = FallbackMode::Prefix)
{
	DispatcherSettings s;
	s.window.debounce_us = 50000;
	s.fallback = mode;
	return s;
}

} // namespace

/* A wall clock stepped back an hour changes nothing: windows run on the monotonic clock. */
TEST(Dispatcher, WindowClosesOnTheMonotonicClockWhateverTheWallClockDoes)
{
	FakeHost host;
	Dispatcher d(host, 1);
	d.configure(settings(), EngineSettings()); /* no redis_url: closed windows wait in the engine */
	const int64_t wall = 800000000000000; /* µs since 2000, as the backends stamp them */
	const int64_t mono = 5000000;

	d.add_drained(batch(1, wall, {key("user:1")}), 1, mono);
	EXPECT_TRUE(d.waits_for_window(mono));
	EXPECT_EQ(d.deadline_us(mono), mono + 50000);

	d.turn(mono + 49999, wall - 3600LL * 1000 * 1000);
	EXPECT_TRUE(d.waits_for_window(mono + 49999)) << "closed early";
	d.turn(mono + 50000, wall - 3600LL * 1000 * 1000);
	EXPECT_FALSE(d.waits_for_window(mono + 50000)) << "the window did not close at its monotonic deadline";
	EXPECT_EQ(d.engine().min_held_seq(Stream::First), 1u);
	EXPECT_EQ(d.delivered_seq(), 0u);
	EXPECT_EQ(d.pending_targets(), 1u);
}

/* Commits a fallback that ran covers count as delivered; a refused one does not. */
TEST(Dispatcher, ProgressStopsBelowWhatIsHeldAndUncoveredIsKept)
{
	FakeHost host;
	Dispatcher d(host, 1);
	d.configure(settings(), EngineSettings());
	d.add_drained(batch(1, 0, {key("a")}) + batch(2, 0, {key("b")}), 2, 0);
	d.turn(0, 0);
	EXPECT_EQ(d.delivered_seq(), 0u);
	EXPECT_TRUE(d.held().contains(1) && d.held().contains(2)) << "both wait in the window";

	/* Lost commits with only the empty prefix known: refused, so uncovered. */
	host.prefixes.prefixes = {""};
	d.add_unrecorded(3, 4);
	ASSERT_EQ(d.uncovered().size(), 1u);
	EXPECT_EQ(d.uncovered()[0].lo, 3u);
	EXPECT_EQ(d.uncovered()[0].hi, 4u);
	bool warned = false;
	for (const LogLine &l : host.lines)
		warned = warned || (l.level == LogLevel::Warning && l.message.find("cannot cover") != std::string::npos);
	EXPECT_TRUE(warned);
}

/*
 * A second send Redis refused, under fallback = flushdb: the FLUSHDB must
 * go out on that stream. (The worker used to submit only the plan's
 * targets, which flushdb has none of, so nothing covered it.)
 */
TEST(Dispatcher, RefusedSecondSendIsCoveredByFlushdb)
{
	for (Stream s : {Stream::Redelete, Stream::Standby}) {
		FakeHost host;
		Dispatcher d(host, 1);
		d.configure(settings(FallbackMode::FlushDb), EngineSettings());
		d.cover(FallbackNeed{"app:", s, 7});
		EXPECT_EQ(d.engine().min_held_seq(s), 7u) << "no FLUSHDB was queued for stream " << static_cast<int>(s);
	}
}

/* Under prefix, the prefix's glob goes out on the second send's stream; an empty prefix is refused and said. */
TEST(Dispatcher, RefusedSecondSendUnderPrefixCoversThePrefixOrSaysItCannot)
{
	FakeHost host;
	Dispatcher d(host, 1);
	d.configure(settings(), EngineSettings());
	d.cover(FallbackNeed{"app:", Stream::Standby, 9});
	EXPECT_EQ(d.engine().min_held_seq(Stream::Standby), 9u);
	EXPECT_TRUE(host.lines.empty());

	d.cover(FallbackNeed{"", Stream::Redelete, 3});
	ASSERT_FALSE(host.lines.empty());
	EXPECT_EQ(host.lines.back().level, LogLevel::Warning);
	EXPECT_EQ(d.take_counters().fallbacks_refused, 1u);
}

/* A changed fallback mode retries uncovered commits. */
TEST(Dispatcher, ChangedFallbackRetriesUncovered)
{
	FakeHost host;
	host.prefixes.prefixes = {""};
	Dispatcher d(host, 1);
	d.configure(settings(), EngineSettings());
	d.add_unrecorded(5, 5);
	ASSERT_EQ(d.uncovered().size(), 1u);
	d.configure(settings(FallbackMode::FlushDb), EngineSettings());
	EXPECT_EQ(d.engine().min_held_seq(Stream::First), 5u) << "the retry's FLUSHDB was not queued";
}

/* The latency histograms are plain structs (they live in shared memory too):
 * a new dispatcher's counters must still start at zero, whatever the memory
 * held before. (Its first turn used to report leftover garbage.) */
TEST(Dispatcher, CountersStartAtZeroWhateverTheMemoryHeld)
{
	std::unique_ptr<unsigned char[]> memory(new unsigned char[sizeof(Dispatcher)]);
	memset(memory.get(), 0xAB, sizeof(Dispatcher));
	FakeHost host;
	Dispatcher *d = new (memory.get()) Dispatcher(host, 1);
	DispatchCounters c = d->take_counters();
	EXPECT_EQ(c.latency.count(), 0u);
	EXPECT_EQ(c.standby_lag.count(), 0u);
	EXPECT_EQ(c.refreshes.latency.count(), 0u);
	EXPECT_EQ(c.refreshes.latency.max(), 0u);
	d->~Dispatcher();
}
