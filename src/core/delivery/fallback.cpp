/*
 * fallback.cpp — fallback plans and the bookkeeping of uncovered commits.
 */
#include "core/delivery/fallback.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* Beyond this many uncovered ranges, the newest is merged into its neighbour. */
constexpr size_t kMaxUncoveredJobs = 256;

void
add_prefixes(std::vector<std::string> &into, const std::vector<std::string> &from)
{
	for (const std::string &p : from)
		if (std::find(into.begin(), into.end(), p) == into.end())
			into.push_back(p);
}

} // namespace

std::string
generation_key(const std::string &prefix)
{
	return prefix + "cachebust:generation";
}

FallbackPlan
plan_fallback(FallbackMode mode, const std::vector<std::string> &prefixes, bool prefixes_incomplete)
{
	FallbackPlan plan;
	switch (mode) {
	case FallbackMode::None:
		plan.refused = prefixes;
		plan.incomplete = prefixes_incomplete;
		break;
	case FallbackMode::FlushDb:
		/* Covers every prefix, known or not. */
		plan.flushdb = true;
		break;
	case FallbackMode::Prefix:
		plan.incomplete = prefixes_incomplete;
		for (const std::string &p : prefixes) {
			if (p.empty()) {
				/* "every key under ''" is the whole database: never implicitly. */
				plan.refused.push_back(p);
				continue;
			}
			Target t;
			t.kind = TargetKind::Key;
			t.glob = true;
			t.key = glob_escape(p);
			t.prefix_len = static_cast<uint32_t>(t.key.size());
			t.key.push_back('*');
			plan.targets.push_back(std::move(t));
		}
		break;
	case FallbackMode::Generation:
		plan.incomplete = prefixes_incomplete;
		for (const std::string &p : prefixes) {
			Target t;
			t.kind = TargetKind::Bump;
			t.key = generation_key(p);
			t.prefix_len = static_cast<uint32_t>(p.size());
			plan.targets.push_back(std::move(t));
		}
		break;
	}
	return plan;
}

uint32_t
FallbackJobs::start(const FallbackPlan &plan, const std::vector<std::string> &prefixes, bool incomplete,
					uint64_t lo, uint64_t hi, bool retry)
{
	Job job;
	job.id = next_id_++;
	if (next_id_ == 0)
		next_id_ = 1; /* 0 means "no job" */
	job.lo = lo;
	job.hi = hi;
	job.prefixes = prefixes;
	job.incomplete = incomplete;
	job.sent = plan.targets;
	job.flushdb = plan.flushdb;
	job.retry = retry;
	if (!plan.covers_everything()) {
		job.failed = true;
		uncover(job);
	}
	uint32_t id = job.id;
	bool has_work = !plan.targets.empty() || plan.flushdb;
	if (has_work)
		jobs_.push_back(std::move(job));
	return has_work ? id : 0;
}

void
FallbackJobs::failed(uint32_t id)
{
	for (Job &job : jobs_)
		if (job.id == id && !job.failed) {
			job.failed = true;
			uncover(job);
		}
}

void
FallbackJobs::adopt_uncovered(uint64_t lo, uint64_t hi, const std::vector<std::string> &prefixes, bool incomplete)
{
	Job job;
	job.id = 0;
	job.lo = lo;
	job.hi = hi;
	job.prefixes = prefixes;
	job.incomplete = incomplete;
	job.failed = true;
	uncover(job);
}

std::vector<FallbackJobs::Job>
FallbackJobs::settle(const SeqSet &held)
{
	std::vector<Job> done;
	for (auto it = jobs_.begin(); it != jobs_.end();) {
		if (held.intersects(it->lo, it->hi)) {
			++it;
			continue;
		}
		if (it->retry && !it->failed)
			recover(*it);
		done.push_back(std::move(*it));
		it = jobs_.erase(it);
	}
	return done;
}

std::vector<FallbackJobs::Job>
FallbackJobs::to_retry()
{
	return uncovered_jobs_;
}

void
FallbackJobs::uncover(const Job &job)
{
	for (const Job &u : uncovered_jobs_)
		if (u.lo == job.lo && u.hi == job.hi)
			return; /* a retry that failed again */
	if (uncovered_jobs_.size() >= kMaxUncoveredJobs) {
		/* Bounded memory: widen the newest range (more is reported uncovered, never less). */
		Job &last = uncovered_jobs_.back();
		last.lo = std::min(last.lo, job.lo);
		last.hi = std::max(last.hi, job.hi);
		add_prefixes(last.prefixes, job.prefixes);
		last.incomplete = last.incomplete || job.incomplete;
	} else
		uncovered_jobs_.push_back(job);
	uncovered_.clear();
	for (const Job &u : uncovered_jobs_)
		uncovered_.push_back(SeqRange{u.lo, u.hi});
}

void
FallbackJobs::recover(const Job &job)
{
	uncovered_jobs_.erase(std::remove_if(uncovered_jobs_.begin(), uncovered_jobs_.end(),
										 [&](const Job &u) { return u.lo == job.lo && u.hi == job.hi; }),
						  uncovered_jobs_.end());
	uncovered_.clear();
	for (const Job &u : uncovered_jobs_)
		uncovered_.push_back(SeqRange{u.lo, u.hi});
}

uint64_t
FallbackJobs::uncovered_batches() const
{
	uint64_t n = 0;
	for (const SeqRange &r : uncovered_)
		n += r.hi - r.lo + 1;
	return n;
}

} // namespace cachebust
