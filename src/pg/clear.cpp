/*
 * clear.cpp — cachebust.clear(pattern) and clear(pattern, token).
 *
 * The first step needs the number of keys the pattern matches, and only the
 * worker talks to Redis: the backend puts the pattern in a count slot in
 * shared memory, sets the worker's latch and sleeps on a condition
 * variable; the worker counts in a SCAN pass of its own (scan_pass.hpp: on
 * every master, never holding up invalidations) and posts the result. The
 * backend waits kCountBudgetMs at most: a longer count is reported as "at
 * least" what it had found. Then it issues a token (clear_tokens.hpp).
 *
 * The second step only checks the token and buffers the pattern as an
 * ordinary pattern target of the transaction; at commit it goes through the
 * queue, the window and the SCAN pass like any invalidate_pattern().
 *
 * Locking: `lock` (a tranche of its own) protects everything in ClearShared
 * but busy_slots, an atomic the worker reads to skip the lock when idle. A
 * count slot belongs to the backend that took it until that backend frees
 * it (also on ERROR, through PG_ENSURE_ERROR_CLEANUP); the worker only
 * writes a slot's progress while its id is the one it counts.
 */
#include "pg/clear.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "core/clear_tokens.hpp"
#include "core/delivery/engine.hpp"
#include "core/redis/connection.hpp"
#include "core/template.hpp"
#include "pg/capture.hpp"
#include "pg/guard.hpp"
#include "pg/guc.hpp"
#include "pg/queue.hpp"

extern "C" {
#include "access/xlog.h"
#include "commands/dbcommands.h"
}

namespace cachebust::pg {

/* Counts running at once, cluster-wide. */
constexpr int kCountSlots = 4;
/* A count stops at this many matches ("at least ..."). */
constexpr uint64 kCountLimit = 100000;
/* ... and the first step waits this long for it at most. */
constexpr int kCountBudgetMs = 10000;

enum class SlotState : uint32 { Free, Requested, Counting, Settled };

struct CountSlot {
	SlotState state;
	uint64 id;
	uint64 matched;
	CountProgress::State result; /* Settled */
	char error[256];			 /* Settled as Failed */
	uint32 glob_len;
	char glob[kMaxKeyLength];
};

struct ClearShared {
	LWLock *lock;
	ConditionVariable settled_cv;
	uint64 next_id;
	pg_atomic_uint32 busy_slots;
	CountSlot counts[kCountSlots];
	ClearTokenTable tokens;
};

static ClearShared *clear_shared = nullptr;

static shmem_request_hook_type prev_shmem_request_hook = nullptr;
static shmem_startup_hook_type prev_shmem_startup_hook = nullptr;

static void
clear_shmem_request()
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sizeof(ClearShared));
	RequestNamedLWLockTranche("cachebust clear", 1);
}

/* In the postmaster at start and after every crash restart. */
static void
clear_shmem_startup()
{
	bool found;
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	clear_shared = nullptr;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ClearShared *c = static_cast<ClearShared *>(ShmemInitStruct("cachebust clear", sizeof(ClearShared), &found));
	if (!found) {
		memset(c, 0, sizeof(ClearShared));
		c->lock = &(GetNamedLWLockTranche("cachebust clear"))->lock;
		ConditionVariableInit(&c->settled_cv);
		pg_atomic_init_u32(&c->busy_slots, 0);
	}
	LWLockRelease(AddinShmemInitLock);
	clear_shared = c;
}

void
clear_request_shmem()
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = clear_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = clear_shmem_startup;
}

/* ---- the worker's side ---- */

void
clear_serve_counts(DeliveryEngine &engine)
{
	/* The counts this worker's engine runs (a new worker starts with none). */
	static std::vector<uint64> running;
	ClearShared *c = clear_shared;
	if (c == nullptr || (pg_atomic_read_u32(&c->busy_slots) == 0 && running.empty()))
		return;

	/* Copied out under the lock, into plain storage; the engine is asked without it. */
	static CountSlot seen[kCountSlots];
	pg_call([&] {
		LWLockAcquire(c->lock, LW_SHARED);
		for (int i = 0; i < kCountSlots; i++) {
			const CountSlot &s = c->counts[i];
			seen[i].state = s.state;
			seen[i].id = s.id;
			seen[i].glob_len = s.glob_len;
			if (s.state == SlotState::Requested || s.state == SlotState::Counting)
				memcpy(seen[i].glob, s.glob, s.glob_len);
		}
		LWLockRelease(c->lock);
	});

	bool waited_for[kCountSlots] = {};
	for (int i = 0; i < kCountSlots; i++) {
		CountSlot &s = seen[i];
		if (s.state != SlotState::Requested && s.state != SlotState::Counting)
			continue;
		waited_for[i] = true;
		CountProgress p;
		if (!engine.count_progress(s.id, p)) {
			std::string why;
			if (engine.start_count(s.id, std::string(s.glob, s.glob_len), kCountLimit, why)) {
				running.push_back(s.id);
				p = CountProgress();
			} else {
				p.state = CountProgress::State::Failed;
				p.error = why;
			}
		}
		s.state = p.settled() ? SlotState::Settled : SlotState::Counting;
		s.matched = p.matched;
		s.result = p.state;
		strlcpy(s.error, p.error.c_str(), sizeof(s.error));
	}

	bool settled_any = false;
	pg_call([&] {
		LWLockAcquire(c->lock, LW_EXCLUSIVE);
		for (int i = 0; i < kCountSlots; i++) {
			CountSlot &s = c->counts[i];
			/* (The backend may have given up and freed it, or taken it again.) */
			if (!waited_for[i] || s.id != seen[i].id ||
				(s.state != SlotState::Requested && s.state != SlotState::Counting))
				continue;
			s.state = seen[i].state;
			s.matched = seen[i].matched;
			s.result = seen[i].result;
			memcpy(s.error, seen[i].error, sizeof(s.error));
			settled_any = settled_any || s.state == SlotState::Settled;
		}
		LWLockRelease(c->lock);
	});
	if (settled_any)
		pg_call([&] { ConditionVariableBroadcast(&c->settled_cv); });

	/* Settled, or given up by the backend: the engine forgets it. */
	auto done = [&](uint64 id) {
		for (int i = 0; i < kCountSlots; i++)
			if (waited_for[i] && seen[i].id == id && seen[i].state != SlotState::Settled)
				return false;
		engine.end_count(id);
		return true;
	};
	running.erase(std::remove_if(running.begin(), running.end(), done), running.end());
}

/* ---- the backend's side ---- */

/* Frees the caller's count slot (also on ERROR and at exit). */
static void
release_count_slot(int, Datum arg)
{
	ClearShared *c = clear_shared;
	int slot = DatumGetInt32(arg);
	LWLockAcquire(c->lock, LW_EXCLUSIVE);
	if (c->counts[slot].state != SlotState::Free) {
		c->counts[slot].state = SlotState::Free;
		pg_atomic_sub_fetch_u32(&c->busy_slots, 1);
	}
	LWLockRelease(c->lock);
}

/* Sets the worker's latch (it reads the count slots every turn). */
static void
wake_worker()
{
	LWLockAcquire(shared_queue->lock, LW_SHARED);
	Latch *latch = shared_queue->worker_latch;
	LWLockRelease(shared_queue->lock);
	if (latch != nullptr)
		SetLatch(latch);
}

/* What the worker answered. */
struct CountAnswer {
	uint64 matched;
	ClearCountBound bound;
};

/* Takes a free count slot for glob and asks the worker for the count; ERROR when none is free.
 * (Not inlined: its locals must stay out of count_matches' setjmp frame.) */
static pg_noinline int
request_count(const char *glob, uint32 glob_len)
{
	ClearShared *c = clear_shared;
	int slot = -1;

	LWLockAcquire(c->lock, LW_EXCLUSIVE);
	for (int i = 0; i < kCountSlots && slot < 0; i++)
		if (c->counts[i].state == SlotState::Free)
			slot = i;
	if (slot >= 0) {
		CountSlot &s = c->counts[slot];
		s.state = SlotState::Requested;
		s.id = ++c->next_id;
		s.matched = 0;
		s.error[0] = '\0';
		s.glob_len = glob_len;
		memcpy(s.glob, glob, glob_len);
		pg_atomic_add_fetch_u32(&c->busy_slots, 1);
	}
	LWLockRelease(c->lock);
	if (slot < 0)
		ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						errmsg("cachebust.clear(): %d counts are running already", kCountSlots),
						errhint("Try again in a few seconds.")));
	wake_worker();
	return slot;
}

/*
 * Has the worker count the keys glob matches; ERROR when it cannot. Plain C
 * flow: no C++ object is alive across the waits, which may ERROR (a cancel).
 */
static CountAnswer
count_matches(const char *glob, uint32 glob_len)
{
	ClearShared *c = clear_shared;
	const int slot = request_count(glob, glob_len);
	CountAnswer answer{0, ClearCountBound::Time};
	SlotState state = SlotState::Requested;
	CountProgress::State result = CountProgress::State::Waiting;
	char error[sizeof(c->counts[0].error)];
	error[0] = '\0';

	PG_ENSURE_ERROR_CLEANUP(release_count_slot, Int32GetDatum(slot));
	{
		instr_time start, now;
		INSTR_TIME_SET_CURRENT(start);
		ConditionVariablePrepareToSleep(&c->settled_cv);
		for (;;) {
			LWLockAcquire(c->lock, LW_SHARED);
			const CountSlot &s = c->counts[slot];
			state = s.state;
			answer.matched = s.matched;
			result = s.result;
			strlcpy(error, s.error, sizeof(error));
			LWLockRelease(c->lock);
			if (state == SlotState::Settled)
				break;
			INSTR_TIME_SET_CURRENT(now);
			INSTR_TIME_SUBTRACT(now, start);
			long remaining = kCountBudgetMs - static_cast<long>(INSTR_TIME_GET_MILLISEC(now));
			if (remaining <= 0)
				break;
			/* (Checks for interrupts: a cancel ends the wait, and frees the slot.) */
			ConditionVariableTimedSleep(&c->settled_cv, Min(remaining, 100L), PG_WAIT_EXTENSION);
		}
		ConditionVariableCancelSleep();
	}
	PG_END_ENSURE_ERROR_CLEANUP(release_count_slot, Int32GetDatum(slot));
	release_count_slot(0, Int32GetDatum(slot));

	if (state == SlotState::Requested)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("cachebust.clear(): the cachebust worker did not take up the count within %d s",
							   kCountBudgetMs / 1000),
						errhint("Check that the cachebust worker runs (pg_stat_activity, backend_type "
								"\"cachebust worker\").")));
	if (state == SlotState::Settled && result == CountProgress::State::Failed)
		ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE),
						errmsg("cachebust.clear(): cannot count the keys in Redis: %s", error),
						errdetail("No token is issued without a count."),
						errhint("See cachebust.stats (connected, last_error) and try again.")));
	if (state == SlotState::Settled)
		answer.bound = result == CountProgress::State::Limited ? ClearCountBound::Limit : ClearCountBound::Exact;
	return answer;
}

/* No worker delivers what a standby commits (it commits nothing). */
static void
refuse_on_standby()
{
	if (RecoveryInProgress())
		ereport(ERROR, (errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
						errmsg("cachebust.clear() cannot run during recovery"),
						errhint("Run it on the primary.")));
}

/* The pattern target clear() removes: as invalidate_pattern() builds it, refused as it refuses. */
static Target
clear_target(text *pattern, const KeyPrefixes &prefixes)
{
	std::string_view view(VARDATA_ANY(pattern), VARSIZE_ANY_EXHDR(pattern));
	try {
		Target t = make_target(TargetKind::Key, true, view, prefixes, true);
		capture_check_reach(t);
		return t;
	} catch (const TargetError &e) {
		throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, std::string("cachebust.clear(): ") + e.what());
	}
}

/* A C string (palloc'd) of bytes: what crosses from a guarded block to the C side. */
static char *
pstrdup_bytes(const std::string &s)
{
	char *out = nullptr;
	pg_call([&] { out = pnstrdup(s.data(), s.size()); });
	return out;
}

extern "C" {

PG_FUNCTION_INFO_V1(cachebust_clear_request);
PG_FUNCTION_INFO_V1(cachebust_clear_confirm);

/* clear(pattern): counts the matches and returns a confirmation token. */
PGDLLEXPORT Datum
cachebust_clear_request(PG_FUNCTION_ARGS)
{
	text *pattern = PG_GETARG_TEXT_PP(0);
	queue_require_preloaded("cachebust.clear()");
	refuse_on_standby();

	char *full = nullptr;
	guarded([&]() -> Datum {
		KeyPrefixes prefixes{guc_key_prefix ? guc_key_prefix : "", guc_tag_prefix ? guc_tag_prefix : ""};
		full = pstrdup_bytes(clear_target(pattern, prefixes).key);
		return 0;
	});
	uint32 full_len = static_cast<uint32>(strlen(full)); /* (text holds no NUL) */
	CountAnswer answer = count_matches(full, full_len);

	uint8 random[8];
	if (!pg_strong_random(random, sizeof(random)))
		ereport(ERROR, (errmsg("cachebust.clear(): could not generate a random token")));
	Oid role = GetUserId();
	Oid database = MyDatabaseId;
	char *literal = quote_literal_cstr(text_to_cstring(pattern));

	char *result = nullptr;
	bool issued = false;
	guarded([&]() -> Datum {
		std::string token = clear_token_text(random);
		std::string full_pattern(full, full_len);
		int64_t now = monotonic_us();
		pg_call([&] { LWLockAcquire(clear_shared->lock, LW_EXCLUSIVE); });
		issued = clear_token_issue(clear_shared->tokens, token, role, database, full_pattern, answer.matched, now);
		pg_call([&] { LWLockRelease(clear_shared->lock); });
		result = pstrdup_bytes(
			clear_confirmation(token, answer.matched, answer.bound, full_pattern, literal, kCountBudgetMs / 1000));
		return 0;
	});
	if (!issued)
		ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						errmsg("cachebust.clear(): too many pending clear confirmations"),
						errdetail("%d tokens issued in the last %d s wait to be confirmed.", static_cast<int>(kClearTokens),
								  static_cast<int>(kClearTokenLifetimeUs / 1000000)),
						errhint("Wait until one is used or expires.")));
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/* clear(pattern, token): enqueues the clear the token confirms; returns the first step's count. */
PGDLLEXPORT Datum
cachebust_clear_confirm(PG_FUNCTION_ARGS)
{
	text *pattern = PG_GETARG_TEXT_PP(0);
	char *token = text_to_cstring(PG_GETARG_TEXT_PP(1));
	queue_require_preloaded("cachebust.clear()");
	refuse_on_standby();
	if (!guc_enabled)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("cachebust.clear(): cachebust.enabled is off, so nothing would be removed"),
						errhint("SET cachebust.enabled = on in this session first.")));

	Oid role = GetUserId();
	Oid database = MyDatabaseId;
	ClearRedeem outcome = ClearRedeem::Unknown;
	uint64 count = 0;
	char *full = nullptr;
	guarded([&]() -> Datum {
		Target target = clear_target(pattern, current_prefixes());
		int64_t now = monotonic_us();
		pg_call([&] { LWLockAcquire(clear_shared->lock, LW_EXCLUSIVE); });
		outcome = clear_token_redeem(clear_shared->tokens, token, role, database, target.key, now, count);
		pg_call([&] { LWLockRelease(clear_shared->lock); });
		full = pstrdup_bytes(target.key);
		if (outcome == ClearRedeem::Ok)
			capture_add(std::move(target));
		return 0;
	});

	const char *again = "Call cachebust.clear(pattern) again for a new token.";
	switch (outcome) {
	case ClearRedeem::Ok:
		break;
	case ClearRedeem::Unknown:
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cachebust.clear(): unknown confirmation token \"%s\"", token),
						errdetail("A token is valid once, for %d s.", static_cast<int>(kClearTokenLifetimeUs / 1000000)),
						errhint("%s", again)));
		break;
	case ClearRedeem::Expired:
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cachebust.clear(): the confirmation token \"%s\" has expired", token),
						errdetail("A token is valid for %d s.", static_cast<int>(kClearTokenLifetimeUs / 1000000)),
						errhint("%s", again)));
		break;
	case ClearRedeem::OtherRole:
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("cachebust.clear(): the confirmation token \"%s\" was issued to another role", token),
						errhint("%s", again)));
		break;
	case ClearRedeem::OtherDatabase:
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cachebust.clear(): the confirmation token \"%s\" was issued in another database", token),
						errhint("%s", again)));
		break;
	case ClearRedeem::OtherPattern:
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("cachebust.clear(): the confirmation token \"%s\" was issued for another pattern than "
							   "\"%s\"",
							   token, full),
						errdetail("The pattern, and cachebust.key_prefix, must be those of the first step."),
						errhint("%s", again)));
		break;
	}
	capture_warn_if_overflowed();

	char *role_name = GetUserNameFromId(role, false);
	char *database_name = get_database_name(database);
	/* Who logged in, when that is not the role (SET ROLE, SECURITY DEFINER). */
	Oid session_user = GetSessionUserId();
	char *session_name = session_user != role ? GetUserNameFromId(session_user, false) : nullptr;
	ereport(LOG, (errmsg("cachebust.clear by role \"%s\" in database \"%s\": pattern \"%s\" (token %s, %llu keys "
						 "counted); removed when the transaction commits",
						 role_name, database_name ? database_name : "?", full, token,
						 static_cast<unsigned long long>(count)),
				  session_name ? errdetail("Session user \"%s\".", session_name) : 0));
	PG_RETURN_INT64(static_cast<int64>(count));
}

} // extern "C"

} // namespace cachebust::pg
