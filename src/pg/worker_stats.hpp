/*
 * worker_stats.hpp — the worker's counters on their way to shared memory.
 *
 * The worker adds up what happened during a turn of its loop in a
 * StatsDelta and publishes it once per turn under the spinlock; sessions
 * read the totals through cachebust.stats().
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pg/queue.hpp"

#include "core/delivery/report.hpp"

namespace cachebust::pg {

struct StatsDelta {
	WorkerStats counters{}; /* only the counter fields and the latency histogram are used */
	bool have_error = false;
	std::string last_error;
	std::string last_error_endpoint;
	std::string last_error_key;
	TimestampTz last_error_time = 0;
	TimestampTz last_delivery = 0;

	/* What the delivery engine reported this turn. */
	void add(const DeliveryReport &report, TimestampTz now);
	void note_error(const std::string &message, const std::string &endpoint, TimestampTz now,
					const std::string &key = std::string());
};

struct StatsGauges {
	uint64 pending_targets;
	uint64 uncovered_batches;
	uint64 slot_lag_bytes;
	bool connected;
	const std::vector<std::string> &standbys_absent;
};

/* Adds delta to the shared counters, sets the gauges, and clears delta. */
void worker_stats_publish(StatsDelta &delta, const StatsGauges &gauges);

/* A refresh worker ran a materialized key's query (shared counters). */
void worker_stats_count_refresh(bool failed);

} // namespace cachebust::pg
