/*
 * prefix_registry.hpp — every key_prefix that committed invalidations.
 *
 * key_prefix can differ per database and role, so the prefix fallback must
 * know all prefixes in use, including after a crash, when the invalidations
 * themselves are lost. Backends record a prefix the first time they commit
 * with it (before commit, when an error can still abort); the list lives in
 * shared memory and in a file in the data directory that is loaded again
 * after every restart.
 */
#pragma once

#include <string>
#include <vector>

#include "pg/postgres.hpp"

namespace cachebust::pg {

/* Distinct prefixes remembered; beyond that the fallback is incomplete (and says so). */
constexpr int kMaxRegisteredPrefixes = 64;

Size prefix_registry_shmem_size();

/* Shared-memory start-up (postmaster): attach, and on first creation load the file. */
void prefix_registry_shmem_init(LWLock *lock);

/* PRE_COMMIT: makes sure `prefix` is registered durably. May ERROR. */
void prefix_registry_note(const char *prefix);

struct RegisteredPrefixes {
	std::vector<std::string> prefixes;
	bool overflowed; /* some prefixes could not be remembered */
	/* Who first committed with the empty prefix ('' if nobody did). */
	std::string empty_prefix_source;
};

/* The worker's copy of the list, for the fallback. */
RegisteredPrefixes prefix_registry_snapshot();

} // namespace cachebust::pg
