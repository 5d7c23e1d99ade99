/*
 * journal_backlog.hpp — what the worker must read back from the WAL journal,
 * and how far back the journal must be kept.
 *
 * With cachebust.journal every committed batch is also a logical message in
 * WAL, written before the commit record (src/pg/capture.cpp). The ring stays
 * the fast path; WAL is read only for commits whose batches the worker does
 * not hold: those of a run that crashed or a worker that died, a
 * transaction too large for the ring (it leaves only a marker), commits the
 * full ring could not record, and everything held while more than
 * cachebust.max_pending targets waited (the worker lets them go and reads
 * them again once Redis can take them). Reading again only ever delivers a
 * commit twice, which is harmless: deletes and increments.
 *
 * Two pieces, both pure bookkeeping:
 *
 *   LsnHorizon   for the commits drained and not yet delivered, the oldest
 *                LSN where one of their messages starts: the slot may not
 *                move past it.
 *   JournalBacklog  the WAL range to read [from, to] and the commits
 *                (sequence numbers) that wait for it. Replayed targets are
 *                delivered under kReplaySeq; the waiting commits count as
 *                delivered once the reader has passed `to` and nothing under
 *                kReplaySeq is held any more.
 *   JournalGap   open while the slot does not reach back to every commit
 *                not yet delivered: its WAL was lost and the slot made
 *                again, or a fallback stands in for a replay and has not
 *                run. A restart must then fall back (the worker records the
 *                gap on disk before it opens). It closes once no commit up
 *                to upto_seq is held, none is uncovered, and everything
 *                committed before restart_lsn is delivered.
 *
 * LSNs are uint64_t, 0 meaning none.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "core/seq_set.hpp"

namespace cachebust {

/* The commit sequence number replayed targets are delivered under. Commit
 * seqs start at 1; 0 also stands for "every commit before this run of the
 * server", which is exactly what a replay after a crash delivers. */
constexpr uint64_t kReplaySeq = 0;

class LsnHorizon
{
  public:
	/* Bounded: past this many entries neighbours merge (holding the slot
	 * back a little longer, never less). */
	static constexpr size_t kMaxEntries = 4096;

	/* Commit seq (drained in increasing seq order) whose first message
	 * starts at first_lsn (0: it wrote none, nothing to keep). */
	void add(uint64_t seq, uint64_t first_lsn);
	/* Every commit <= seq is delivered. */
	void release_upto(uint64_t seq);
	/* The oldest first-message LSN still needed (0: none). */
	uint64_t oldest() const;
	size_t size() const { return entries_.size(); }
	void clear() { entries_.clear(); }

  private:
	struct Entry {
		uint64_t seq;		/* the newest commit this entry stands for */
		uint64_t first_lsn; /* the oldest first message among them */
	};
	std::deque<Entry> entries_;
};

class JournalBacklog
{
  public:
	/* Commits seqs have their batches in WAL between from_lsn (at or before
	 * their first message) and to_lsn (at or after their commit records). */
	void add(uint64_t from_lsn, uint64_t to_lsn, const SeqSet &seqs, const std::string &why);

	bool active() const { return from_ != 0; }
	uint64_t from() const { return from_; }
	uint64_t to() const { return to_; }
	/* The commits that wait for the read (those already done excluded). */
	const SeqSet &seqs() const { return seqs_; }
	/* Why the current read started (the first reason), for the log. */
	const std::string &why() const { return why_; }

	/* The reader must start over at from(): the range grew backwards past
	 * where it had read. Cleared by started_reading(). */
	bool restart_needed() const { return restart_needed_; }
	/* Read everything again from from() (what was read is not held any more). */
	void restart() { restart_needed_ = true; read_pos_ = from_; }
	void started_reading(uint64_t position);
	/* The reader is at position; whether it has passed to(). */
	bool read_to(uint64_t position);
	bool read_done() const { return active() && read_pos_ >= to_; }
	uint64_t read_position() const { return read_pos_; }

	/* The read is over and its targets are applied: forget it. */
	void finish();

	/* For the log line at the end. */
	uint64_t batches = 0;
	uint64_t targets = 0;
	int64_t started_us = 0;

  private:
	uint64_t from_ = 0;
	uint64_t to_ = 0;
	uint64_t read_pos_ = 0;
	bool restart_needed_ = false;
	SeqSet seqs_;
	std::string why_;
};

class JournalGap
{
  public:
	bool is_open() const { return open_; }
	/* Opens it, or widens it to more commits and a later slot position. */
	void open(uint64_t upto_seq, uint64_t restart_lsn);
	/* Whether what it stands for is delivered or covered: held is the
	 * dispatcher's, delivered_bound the LSN before which every commit is
	 * delivered (0: not known now). */
	bool covered(const SeqSet &held, bool any_uncovered, uint64_t delivered_bound) const;
	void close() { *this = JournalGap{}; }

  private:
	bool open_ = false;
	uint64_t upto_seq_ = 0;
	uint64_t restart_lsn_ = 0;
};

/* "16/B374D848", as PostgreSQL prints an LSN. */
std::string lsn_text(uint64_t lsn);

} // namespace cachebust
