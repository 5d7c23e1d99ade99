/* Unit tests: ring-buffer batch encoding, decoding and wrap-around copies. */
#include "core/batch_codec.hpp"

#include <gtest/gtest.h>

using namespace cachebust;

static Target
make(TargetKind kind, bool glob, std::string key, bool immediate = false, uint32_t tpl = 0)
{
	Target t;
	t.kind = kind;
	t.glob = glob;
	t.immediate = immediate;
	t.tag_prefix_len = tpl;
	t.key = std::move(key);
	return t;
}

TEST(BatchCodec, RoundTripKeepsEveryField)
{
	PendingSet pending;
	Target prefixed = make(TargetKind::Key, false, "app:user:1");
	prefixed.prefix_len = 4;
	pending.add(std::move(prefixed), 1);
	pending.add(make(TargetKind::Tag, false, "app:tag:team:7", true, 8), 1);
	pending.add(make(TargetKind::Bump, true, std::string("odd\0key\r\n\"", 10)), 1);
	pending.add(make(TargetKind::Key, true, "search:*"), 1);

	std::string bytes = encode_batch(pending);
	EXPECT_EQ(bytes.size() % 8, 0u);
	stamp_batch(bytes.data(), 42, 1234567, 0xABCDEF);

	DecodedBatch batch;
	EXPECT_EQ(decode_batch(bytes.data(), bytes.size(), batch), bytes.size());
	EXPECT_EQ(batch.seq, 42u);
	EXPECT_EQ(batch.commit_time_us, 1234567);
	EXPECT_EQ(batch.commit_lsn, 0xABCDEFu);
	EXPECT_TRUE(batch.immediate);
	EXPECT_FALSE(batch.lost);
	ASSERT_EQ(batch.targets.size(), 4u);
	EXPECT_EQ(batch.targets[0].key, "app:user:1");
	EXPECT_EQ(batch.targets[0].prefix_len, 4u);
	EXPECT_EQ(batch.targets[1].kind, TargetKind::Tag);
	EXPECT_EQ(batch.targets[1].tag_prefix_len, 8u);
	EXPECT_TRUE(batch.targets[1].immediate);
	EXPECT_EQ(batch.targets[2].key, std::string("odd\0key\r\n\"", 10));
	EXPECT_TRUE(batch.targets[2].glob);
	EXPECT_EQ(batch.targets[2].kind, TargetKind::Bump);
	EXPECT_TRUE(batch.targets[3].glob);
	EXPECT_FALSE(batch.targets[3].immediate);
}

TEST(BatchCodec, NotImmediateUnlessATargetIs)
{
	PendingSet pending;
	pending.add(make(TargetKind::Key, false, "k"), 1);
	std::string bytes = encode_batch(pending);
	DecodedBatch batch;
	decode_batch(bytes.data(), bytes.size(), batch);
	EXPECT_FALSE(batch.immediate);
	EXPECT_EQ(batch_length(bytes.data()), bytes.size());
}

TEST(BatchCodec, ALevelEncodesOnlyWhatThatSubtransactionHolds)
{
	PendingSet pending;
	pending.add(make(TargetKind::Key, false, "outer", true), 1);
	pending.add(make(TargetKind::Key, false, "inner:a"), 2);
	pending.add(make(TargetKind::Tag, false, "inner:b"), 3);

	std::string bytes;
	encode_level_into(pending, 2, bytes);
	DecodedBatch batch;
	EXPECT_EQ(decode_batch(bytes.data(), bytes.size(), batch), bytes.size());
	ASSERT_EQ(batch.targets.size(), 2u);
	EXPECT_EQ(batch.targets[0].key, "inner:a");
	EXPECT_EQ(batch.targets[1].key, "inner:b");
	EXPECT_EQ(batch.targets[1].kind, TargetKind::Tag);
	EXPECT_FALSE(batch.immediate) << "the immediate target is outside the level";

	encode_level_into(pending, 1, bytes);
	EXPECT_EQ(bytes, encode_batch(pending)) << "level 1 is the whole set";
	encode_level_into(pending, 4, bytes);
	decode_batch(bytes.data(), bytes.size(), batch);
	EXPECT_TRUE(batch.targets.empty());
}

TEST(BatchCodec, LostBatchesListTheirPrefixes)
{
	std::string bytes = encode_lost_batch({"tenant1:", ""});
	DecodedBatch batch;
	EXPECT_EQ(decode_batch(bytes.data(), bytes.size(), batch), bytes.size());
	EXPECT_TRUE(batch.lost);
	ASSERT_EQ(batch.targets.size(), 2u);
	EXPECT_EQ(batch.targets[0].key, "tenant1:");
	EXPECT_EQ(target_prefix(batch.targets[0]), "tenant1:");
	EXPECT_EQ(batch.targets[1].key, "");
}

TEST(BatchCodec, CorruptionIsDetected)
{
	PendingSet pending;
	pending.add(make(TargetKind::Key, false, "user:1"), 1);
	std::string bytes = encode_batch(pending);
	DecodedBatch batch;
	EXPECT_THROW(decode_batch(bytes.data(), bytes.size() - 8, batch), std::runtime_error);
	EXPECT_THROW(decode_batch(bytes.data(), 16, batch), std::runtime_error);
	std::string bad = bytes;
	bad[sizeof(BatchHeader)] = 9; /* unknown kind */
	EXPECT_THROW(decode_batch(bad.data(), bad.size(), batch), std::runtime_error);
}

TEST(Ring, CopiesWrapAroundTheEnd)
{
	char ring[16] = {};
	const char src[] = "ABCDEFGHIJ";
	ring_copy_in(ring, sizeof(ring), 100, src, 10); /* offset 4: fits */
	ring_copy_in(ring, sizeof(ring), 12, src, 10);	/* offset 12: wraps after 4 */
	char out[10];
	ring_copy_out(ring, sizeof(ring), 28, out, 10);
	EXPECT_EQ(std::string(out, 10), "ABCDEFGHIJ");
	EXPECT_EQ(std::string(ring, 6), "EFGHIJ");
}

static bool
same(const Target &a, const Target &b)
{
	return a.kind == b.kind && a.glob == b.glob && a.immediate == b.immediate && a.tag_prefix_len == b.tag_prefix_len &&
		   a.prefix_len == b.prefix_len && a.key == b.key;
}

/* The journal's compact message keeps every field, and is much smaller than the ring's batch. */
TEST(JournalMessage, RoundTripKeepsEveryFieldAndIsCompact)
{
	PendingSet pending;
	Target prefixed = make(TargetKind::Key, false, "app:user:1");
	prefixed.prefix_len = 4;
	pending.add(std::move(prefixed), 1);
	pending.add(make(TargetKind::Tag, false, "app:tag:team:7", true, 8), 1);
	pending.add(make(TargetKind::Bump, true, std::string("odd\0key\r\n\"", 10)), 1);
	pending.add(make(TargetKind::Key, true, std::string(300, 'k')), 1); /* a length over one varint byte */

	std::string message;
	encode_journal_into(pending, 0, message);
	std::vector<Target> back;
	decode_journal_message(message.data(), message.size(), back);
	ASSERT_EQ(back.size(), pending.size());
	for (size_t i = 0; i < back.size(); i++)
		EXPECT_TRUE(same(back[i], pending.entries()[i].target)) << i;

	PendingSet two;
	two.add(make(TargetKind::Key, false, "app:user:123"), 1);
	two.add(make(TargetKind::Tag, false, "app:team:7", false, 4), 1);
	encode_journal_into(two, 0, message);
	EXPECT_EQ(message.size(), 1u + (2 + 3 + 12) + (2 + 3 + 10));
	EXPECT_LT(message.size(), encode_batch(two).size() / 2);
}

/* A subtransaction's spill: only its level's tail. */
TEST(JournalMessage, ALevelEncodesOnlyThatSubtransaction)
{
	PendingSet pending;
	pending.add(make(TargetKind::Key, false, "outer"), 1);
	pending.add(make(TargetKind::Key, false, "inner"), 2);
	std::string message;
	encode_journal_into(pending, 2, message);
	std::vector<Target> back;
	decode_journal_message(message.data(), message.size(), back);
	ASSERT_EQ(back.size(), 1u);
	EXPECT_EQ(back[0].key, "inner");
}

/* Messages in the ring's format (the first 0.3.0 builds) are read too; garbage is refused. */
TEST(JournalMessage, ReadsTheRingFormatAndRefusesGarbage)
{
	PendingSet pending;
	pending.add(make(TargetKind::Key, false, "legacy"), 1);
	std::string ring = encode_batch(pending);
	std::vector<Target> back;
	decode_journal_message(ring.data(), ring.size(), back);
	ASSERT_EQ(back.size(), 1u);
	EXPECT_EQ(back[0].key, "legacy");

	std::string message;
	encode_journal_into(pending, 0, message);
	for (size_t cut = 2; cut < message.size(); cut++) { /* (the marker alone: no targets, valid) */
		back.clear();
		EXPECT_THROW(decode_journal_message(message.data(), cut, back), std::runtime_error) << cut;
	}
	std::string bad = message;
	bad[1] = 9; /* no such kind */
	EXPECT_THROW(decode_journal_message(bad.data(), bad.size(), back), std::runtime_error);
	EXPECT_THROW(decode_journal_message("", 0, back), std::runtime_error);
}
