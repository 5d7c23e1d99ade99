/*
 * worker_refresh.cpp — the worker's side of materialized keys: requests to the
 * refresh workers (refresh_requests.hpp) and starting them (refresh_worker.hpp).
 * See worker_impl.hpp.
 */
#include "pg/worker_impl.hpp"

#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/refresh_requests.hpp"
#include "pg/refresh_worker.hpp"

namespace cachebust::pg {

/*
 * Materialized keys are recomputed by refresh workers connected to their
 * database (refresh_worker.hpp). A standby's worker has none: a key whose
 * tables changed is removed there instead (the dispatcher does that when
 * a request returns 0).
 */
uint64_t
Worker::request_refresh(uint32_t database, const std::string &key)
{
	if (standby_)
		return 0;
	uint64 generation = 0;
	pg_call([&] { generation = refresh_request(database, key); });
	next_refresh_start_us_ = 0; /* a worker may have to be started now */
	return generation;
}

uint64_t
Worker::refresh_done(uint32_t database, const std::string &key)
{
	uint64 done = 0;
	pg_call([&] { done = cachebust::pg::refresh_done(database, key); });
	return done;
}

void
Worker::refresh_forget(uint32_t database, const std::string &key)
{
	pg_call([&] { cachebust::pg::refresh_forget(database, key); });
}

/* Starts refresh workers for databases with work and too few of them (at
 * most every kRefreshStartCheckUs unless a request just came). */
void
Worker::start_refresh_workers()
{
	int64 now = monotonic_us();
	if (standby_ || now < next_refresh_start_us_)
		return;
	next_refresh_start_us_ = now + kRefreshStartCheckUs;
	for (;;) {
		Oid database = InvalidOid;
		pg_call([&] { database = refresh_database_needing_worker(guc_refresh_workers); });
		if (database == InvalidOid)
			return;
		bool started = false;
		pg_call([&] { started = refresh_worker_start(database); });
		if (!started) {
			pg_call([&] { refresh_start_failed(database); });
			log(LogLine{LogLevel::Warning, "cachebust could not start a refresh worker for database " +
											   std::to_string(database),
						"Every background worker slot is taken; its materialized keys are removed instead of "
						"recomputed until one is free.",
						"Raise max_worker_processes."});
			return;
		}
	}
}

} // namespace cachebust::pg
