/*
 * worker_stats.cpp — merging the worker's counters into shared memory.
 */
#include "pg/worker_stats.hpp"

namespace cachebust::pg {

void
StatsDelta::add(const DeliveryReport &report, TimestampTz now)
{
	const DeliveryCounters &c = report.counters;
	counters.redis_commands += c.commands;
	counters.redis_errors += c.errors;
	counters.retries += c.retries;
	counters.reconnects += c.reconnects;
	counters.targets_failed += c.targets_failed;
	counters.tag_members_skipped += c.tag_members_skipped;
	counters.failovers += c.failovers;
	if (report.new_error)
		note_error(report.last_error, report.last_error_endpoint, now, report.last_error_key);
}

void
StatsDelta::note_error(const std::string &message, const std::string &endpoint, TimestampTz now,
					   const std::string &key)
{
	have_error = true;
	last_error = message;
	last_error_endpoint = endpoint;
	last_error_key = key;
	last_error_time = now;
}

void
worker_stats_publish(StatsDelta &delta, const StatsGauges &gauges)
{
	SharedQueue *q = shared_queue;
	char absent[sizeof(q->worker.standbys_absent)];
	std::string names;
	for (const std::string &name : gauges.standbys_absent)
		names += (names.empty() ? "" : ",") + name;
	strlcpy(absent, names.c_str(), sizeof(absent));

	WorkerStats &w = q->worker;
	const WorkerStats &d = delta.counters;

	SpinLockAcquire(&q->stats_mutex);
	w.targets_coalesced += d.targets_coalesced;
	w.targets_delivered += d.targets_delivered;
	w.targets_failed += d.targets_failed;
	w.tag_members_skipped += d.tag_members_skipped;
	w.redis_commands += d.redis_commands;
	w.redis_errors += d.redis_errors;
	w.retries += d.retries;
	w.reconnects += d.reconnects;
	w.failovers += d.failovers;
	w.fallbacks += d.fallbacks;
	w.fallbacks_refused += d.fallbacks_refused;
	w.second_sends += d.second_sends;
	w.journal_replayed_batches += d.journal_replayed_batches;
	w.journal_replay_us += d.journal_replay_us;
	w.standby_timeouts += d.standby_timeouts;
	w.latency.merge(d.latency);
	w.standby_lag.merge(d.standby_lag);
	w.refresh_failures += d.refresh_failures;
	w.refreshes_coalesced += d.refreshes_coalesced;
	w.refresh_latency.merge(d.refresh_latency);
	if (delta.last_delivery != 0)
		w.last_delivery = delta.last_delivery;
	if (delta.have_error) {
		w.last_error_time = delta.last_error_time;
		strlcpy(w.last_error, delta.last_error.c_str(), sizeof(w.last_error));
		strlcpy(w.last_error_endpoint, delta.last_error_endpoint.c_str(), sizeof(w.last_error_endpoint));
		strlcpy(w.last_error_key, delta.last_error_key.c_str(), sizeof(w.last_error_key));
	}
	w.pending_targets = gauges.pending_targets;
	w.uncovered_batches = gauges.uncovered_batches;
	w.slot_lag_bytes = gauges.slot_lag_bytes;
	w.connected = gauges.connected;
	memcpy(w.standbys_absent, absent, sizeof(absent));
	SpinLockRelease(&q->stats_mutex);

	delta = StatsDelta();
}

void
worker_stats_count_refresh(bool failed)
{
	SharedQueue *q = shared_queue;
	SpinLockAcquire(&q->stats_mutex);
	q->worker.refreshes++;
	if (failed)
		q->worker.refresh_failures++;
	SpinLockRelease(&q->stats_mutex);
}

} // namespace cachebust::pg
