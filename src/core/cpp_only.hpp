/*
 * cpp_only.hpp — included LAST by every .cpp file of the pure core.
 *
 * The core (src/core) must build and be unit-tested without PostgreSQL. If
 * one of its headers pulled in a PostgreSQL header, that would bring macros
 * (elog, palloc, setjmp-based error handling) into code that relies on C++
 * exceptions and destructors; this include then refuses to compile. Core
 * headers themselves are also included by the glue, after PostgreSQL's
 * headers, so the check cannot live in them.
 */
#pragma once

#ifdef POSTGRES_H
#error "src/core must not include PostgreSQL headers; keep glue in src/pg"
#endif
