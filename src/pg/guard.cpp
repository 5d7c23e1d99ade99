/*
 * guard.cpp — turning a caught C++ exception into a PostgreSQL ERROR.
 */
#include "pg/guard.hpp"

#include <new>

#include "core/target.hpp"

namespace cachebust::pg {

static void
copy_text(char *dst, size_t size, const std::string &src)
{
	strlcpy(dst, src.c_str(), size);
}

/* Classifies the in-flight exception; called only from a catch block. */
void
catch_current_exception(CaughtError &out) noexcept
{
	out.message[0] = out.detail[0] = out.hint[0] = '\0';
	try {
		throw;
	} catch (const PgException &e) {
		out.pg_error = e.edata;
	} catch (const UserError &e) {
		out.sqlstate = e.sqlstate;
		copy_text(out.message, sizeof(out.message), e.message);
		copy_text(out.detail, sizeof(out.detail), e.detail);
		copy_text(out.hint, sizeof(out.hint), e.hint);
	} catch (const TargetError &e) {
		out.sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;
		strlcpy(out.message, e.what(), sizeof(out.message));
	} catch (const std::bad_alloc &) {
		out.sqlstate = ERRCODE_OUT_OF_MEMORY;
		strlcpy(out.message, "out of memory", sizeof(out.message));
	} catch (const std::exception &e) {
		out.sqlstate = ERRCODE_INTERNAL_ERROR;
		snprintf(out.message, sizeof(out.message), "cachebust internal error: %s", e.what());
	} catch (...) {
		out.sqlstate = ERRCODE_INTERNAL_ERROR;
		strlcpy(out.message, "cachebust internal error: unknown exception", sizeof(out.message));
	}
}

void
raise_caught_error(const CaughtError &err)
{
	if (err.pg_error != nullptr)
		ReThrowError(err.pg_error);
	ereport(ERROR,
			(errcode(err.sqlstate), errmsg("%s", err.message),
			 err.detail[0] ? errdetail("%s", err.detail) : 0,
			 err.hint[0] ? errhint("%s", err.hint) : 0));
	pg_unreachable();
}

} // namespace cachebust::pg
