/*
 * cpp_only.hpp — include first in every file of the pure core.
 *
 * The core (src/core) must build and be unit-tested without PostgreSQL. A
 * PostgreSQL header pulled in by accident would bring its macros (elog,
 * palloc, setjmp-based error handling) into code that relies on C++
 * exceptions and destructors, so we refuse to compile in that case.
 */
#pragma once

#ifdef POSTGRES_H
#error "src/core must not include PostgreSQL headers; keep glue in src/pg"
#endif
