/*
 * journal_backlog.cpp — the slot's horizon and the WAL still to read.
 */
#include "core/delivery/journal_backlog.hpp"

#include <algorithm>
#include <cstdio>

#include "core/cpp_only.hpp"

namespace cachebust {

void
LsnHorizon::add(uint64_t seq, uint64_t first_lsn)
{
	if (first_lsn == 0)
		return;
	/* An entry whose first LSN is at or above the new one is never the
	 * oldest again while the new one is held (it is released no later). */
	uint64_t newest = seq;
	while (!entries_.empty() && entries_.back().first_lsn >= first_lsn) {
		newest = std::max(newest, entries_.back().seq);
		entries_.pop_back();
	}
	entries_.push_back(Entry{newest, first_lsn});
	if (entries_.size() > kMaxEntries) {
		/* Merge pairs: each keeps the older LSN and the newer seq. */
		std::deque<Entry> merged;
		for (size_t i = 0; i < entries_.size(); i += 2) {
			Entry e = entries_[i];
			if (i + 1 < entries_.size())
				e.seq = std::max(e.seq, entries_[i + 1].seq);
			merged.push_back(e);
		}
		entries_.swap(merged);
	}
}

void
LsnHorizon::release_upto(uint64_t seq)
{
	while (!entries_.empty() && entries_.front().seq <= seq)
		entries_.pop_front();
}

uint64_t
LsnHorizon::oldest() const
{
	/* Increasing from front to back (add() keeps it so). */
	return entries_.empty() ? 0 : entries_.front().first_lsn;
}

void
JournalBacklog::add(uint64_t from_lsn, uint64_t to_lsn, const SeqSet &seqs, const std::string &why)
{
	if (!active()) {
		from_ = from_lsn;
		to_ = to_lsn;
		read_pos_ = from_lsn;
		restart_needed_ = true;
		why_ = why;
	} else {
		if (from_lsn < read_pos_)
			restart_needed_ = true;
		from_ = std::min(from_, from_lsn);
		to_ = std::max(to_, to_lsn);
	}
	seqs_.merge(seqs);
}

void
JournalBacklog::started_reading(uint64_t position)
{
	restart_needed_ = false;
	read_pos_ = position;
}

bool
JournalBacklog::read_to(uint64_t position)
{
	read_pos_ = std::max(read_pos_, position);
	return read_done();
}

void
JournalBacklog::finish()
{
	*this = JournalBacklog();
}

std::string
lsn_text(uint64_t lsn)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%X/%X", static_cast<unsigned>(lsn >> 32), static_cast<unsigned>(lsn));
	return buf;
}

void
JournalGap::open(uint64_t upto_seq, uint64_t restart_lsn)
{
	open_ = true;
	upto_seq_ = std::max(upto_seq_, upto_seq);
	restart_lsn_ = std::max(restart_lsn_, restart_lsn);
}

bool
JournalGap::covered(const SeqSet &held, bool any_uncovered, uint64_t delivered_bound) const
{
	if (!open_)
		return true;
	/* (Seq 0 stands for the previous run's commits: held while its fallback runs.) */
	if ((!held.empty() && held.min() <= upto_seq_) || any_uncovered)
		return false;
	return restart_lsn_ == 0 || (delivered_bound != 0 && delivered_bound >= restart_lsn_);
}

} // namespace cachebust
