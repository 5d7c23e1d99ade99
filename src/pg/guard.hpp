/*
 * guard.hpp — the boundary between C++ and PostgreSQL error handling.
 *
 * Two directions must never mix (DESIGN.md, engineering rules):
 *  - A C++ exception must not unwind into PostgreSQL. Every C-ABI entry
 *    point runs its body through guarded(), which catches everything, copies
 *    the message into plain storage, and raises the PostgreSQL ERROR only
 *    after every C++ object of the body has been destroyed.
 *  - An ERROR (a longjmp) must not jump over live C++ objects. PostgreSQL
 *    calls made from C++ scopes go through pg_call(), which catches the
 *    ERROR with PG_TRY and turns it into a PgException; guarded() re-throws
 *    the original error data, so SQLSTATE, detail and hint survive.
 */
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "pg/postgres.hpp"

namespace cachebust::pg {

/* A PostgreSQL ERROR caught in C++: the copied error data. */
struct PgException {
	ErrorData *edata;
};

/* An error of ours meant for the user, with SQLSTATE, detail and hint. */
struct UserError : std::exception {
	int sqlstate;
	std::string message;
	std::string detail;
	std::string hint;

	UserError(int code, std::string msg, std::string det = {}, std::string hnt = {})
		: sqlstate(code), message(std::move(msg)), detail(std::move(det)), hint(std::move(hnt))
	{
	}
	const char *what() const noexcept override { return message.c_str(); }
};

/*
 * Runs f, a call into PostgreSQL, turning an ERROR into a PgException.
 *
 * f must keep no C++ object with a destructor alive where it calls
 * PostgreSQL (the ERROR's longjmp lands here, over f's frame): wrap single
 * calls, not C++ call trees. A C++ exception thrown by f is caught inside
 * PG_TRY and thrown again after PG_END_TRY, so PG_exception_stack is never
 * left pointing at a frame that is gone.
 */
template <typename F>
void
pg_call(F &&f)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ErrorData *volatile edata = nullptr;
	std::exception_ptr cpp_error;

	PG_TRY();
	{
		try {
			f();
		} catch (...) {
			cpp_error = std::current_exception();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();

	if (edata != nullptr)
		throw PgException{edata};
	if (cpp_error)
		std::rethrow_exception(cpp_error);
}

/* Plain storage for an error on its way out of C++ (no destructors). */
struct CaughtError {
	ErrorData *pg_error;
	int sqlstate;
	char message[1024];
	char detail[1024];
	char hint[512];
};

void catch_current_exception(CaughtError &out) noexcept;
[[noreturn]] void raise_caught_error(const CaughtError &err);

/*
 * Runs an entry point's body. The body's C++ objects are all gone when the
 * ERROR is raised, because the try block has been left by then.
 */
template <typename F>
Datum
guarded(F &&body)
{
	CaughtError err;
	err.pg_error = nullptr;
	err.sqlstate = 0;

	try {
		return body();
	} catch (...) {
		catch_current_exception(err);
	}
	raise_caught_error(err);
}

/*
 * A background worker's body: an exception (a PostgreSQL ERROR turned into
 * one, or our own) ends the process with FATAL "<who> failed: ...", raised
 * only once every C++ object of the body has been destroyed.
 */
template <typename F>
void
run_worker_body(const char *who, F &&body)
{
	CaughtError err;
	err.pg_error = nullptr;
	bool failed = false;
	try {
		body();
	} catch (...) {
		catch_current_exception(err);
		failed = true;
	}
	if (failed) {
		const char *message = err.pg_error != nullptr ? err.pg_error->message : err.message;
		ereport(FATAL, (errmsg("%s failed: %s", who, message != nullptr ? message : "unknown error")));
	}
}

} // namespace cachebust::pg
