/*
 * prefix_registry.cpp — shared-memory list of key prefixes in use, backed
 * by PGDATA/pg_cachebust/prefixes (one hex-encoded prefix per line, so any
 * byte is allowed; a line "*" records that the list overflowed; a line
 * "@<hex>" names the database and role that first committed with the empty
 * prefix, which the prefix fallback cannot cover).
 *
 * Registration is rare: each backend remembers the last prefix it found
 * registered, so the common commit path compares one string and takes no lock.
 */
#include "pg/prefix_registry.hpp"

#include <sys/stat.h>

#include "pg/guc.hpp"

extern "C" {
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
}

namespace cachebust::pg {

static const char *const kRegistryFile = "pg_cachebust/prefixes";

struct PrefixRegistry {
	LWLock *lock;
	int count;
	bool overflowed;
	uint16 lengths[kMaxRegisteredPrefixes];
	char prefixes[kMaxRegisteredPrefixes][kMaxPrefixLength];
	/* Who first committed with the empty prefix: 'database "d", role "r"' ('' if nobody). */
	char empty_source[2 * NAMEDATALEN + 32];
};

static PrefixRegistry *registry = nullptr;

/* This backend's last prefix known to be registered (valid while last_known_valid). */
static char last_known[kMaxPrefixLength + 1];
static bool last_known_valid = false;

Size
prefix_registry_shmem_size()
{
	return sizeof(PrefixRegistry);
}

static int
find_prefix(const char *prefix, size_t len)
{
	for (int i = 0; i < registry->count; i++)
		if (registry->lengths[i] == len && memcmp(registry->prefixes[i], prefix, len) == 0)
			return i;
	return -1;
}

static void
add_prefix(const char *prefix, size_t len)
{
	if (registry->count >= kMaxRegisteredPrefixes) {
		registry->overflowed = true;
		return;
	}
	memcpy(registry->prefixes[registry->count], prefix, len);
	registry->lengths[registry->count] = static_cast<uint16>(len);
	registry->count++;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Loads the file into an empty registry; a damaged line counts as overflow. */
static void
load_registry_file()
{
	FILE *f = AllocateFile(kRegistryFile, "r");
	if (f == nullptr)
		return; /* nothing registered yet */

	char line[2 * kMaxPrefixLength + 2];
	char prefix[kMaxPrefixLength];
	while (fgets(line, sizeof(line), f) != nullptr) {
		size_t n = strcspn(line, "\n");
		if (n == 1 && line[0] == '*') {
			registry->overflowed = true;
			continue;
		}
		bool source = n > 0 && line[0] == '@';
		const char *hex = source ? line + 1 : line;
		size_t hex_len = source ? n - 1 : n;
		bool ok = hex_len % 2 == 0 && hex_len / 2 <= sizeof(prefix);
		for (size_t i = 0; ok && i < hex_len; i += 2) {
			int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
			ok = hi >= 0 && lo >= 0;
			prefix[i / 2] = static_cast<char>(hi * 16 + lo);
		}
		if (ok && source) {
			strlcpy(registry->empty_source, prefix,
					Min(hex_len / 2 + 1, sizeof(registry->empty_source)));
			continue;
		}
		if (!ok) {
			registry->overflowed = true;
			continue;
		}
		if (find_prefix(prefix, n / 2) < 0)
			add_prefix(prefix, n / 2);
	}
	FreeFile(f);
}

void
prefix_registry_shmem_init(LWLock *lock)
{
	bool found;
	registry = static_cast<PrefixRegistry *>(
		ShmemInitStruct("cachebust prefixes", prefix_registry_shmem_size(), &found));
	if (!found) {
		memset(registry, 0, sizeof(*registry));
		registry->lock = lock;
		load_registry_file();
	}
}

/* Appends one line to the file and syncs it; ERROR on failure (we are before commit).
 * marker: 0 for a prefix, '*' for the overflow line, '@' for who used the empty prefix. */
static void
append_registry_line(const char *prefix, size_t len, char marker)
{
	char line[2 * kMaxPrefixLength + 3];
	size_t n = 0;
	static const char digits[] = "0123456789abcdef";

	if (marker != 0)
		line[n++] = marker;
	if (marker != '*')
		for (size_t i = 0; i < len; i++) {
			unsigned char c = static_cast<unsigned char>(prefix[i]);
			line[n++] = digits[c >> 4];
			line[n++] = digits[c & 15];
		}
	line[n++] = '\n';

	struct stat st;
	bool created = stat(kRegistryFile, &st) != 0;
	FILE *f = AllocateFile(kRegistryFile, "a");
	if (f == nullptr)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not open cachebust file \"%s\": %m", kRegistryFile)));
	bool ok = fwrite(line, 1, n, f) == n && fflush(f) == 0 && pg_fsync(fileno(f)) == 0;
	if (FreeFile(f) != 0)
		ok = false;
	if (!ok)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not write cachebust file \"%s\": %m", kRegistryFile)));
	/* A new file is durable only once its directory entry is. */
	if (created)
		(void) fsync_fname_ext("pg_cachebust", true, false, ERROR);
}

void
prefix_registry_note(const char *prefix)
{
	size_t len = strlen(prefix);
	if (registry == nullptr)
		return;
	if (last_known_valid && strcmp(last_known, prefix) == 0)
		return;

	/* Named before taking the lock: these look up the catalogs. */
	char source[sizeof(registry->empty_source)] = "";
	if (len == 0) {
		const char *database = get_database_name(MyDatabaseId);
		snprintf(source, sizeof(source), "database \"%s\", role \"%s\"", database ? database : "?",
				 GetUserNameFromId(GetUserId(), true) ?: "?");
	}

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	if (find_prefix(prefix, len) < 0) {
		bool overflow = registry->count >= kMaxRegisteredPrefixes;
		if (!overflow || !registry->overflowed)
			append_registry_line(prefix, len, overflow ? '*' : 0);
		if (len == 0 && !overflow) {
			append_registry_line(source, strlen(source), '@');
			strlcpy(registry->empty_source, source, sizeof(registry->empty_source));
			/* What the prefix fallback cannot cover, said where it starts. */
			if (guc_fallback == FALLBACK_PREFIX)
				ereport(WARNING,
						(errmsg("cachebust.key_prefix is empty for %s: an invalidation of this commit that is lost "
								"cannot be covered by cachebust.fallback = prefix",
								source),
						 errdetail("The prefix fallback never removes every key of the Redis database; "
								   "wait_for_delivery() and barrier() report such losses as undelivered."),
						 errhint("Set cachebust.key_prefix for this database or role (ALTER DATABASE ... SET), "
								 "or choose cachebust.fallback = flushdb or generation.")));
		}
		if (overflow && !registry->overflowed)
			ereport(WARNING,
					(errmsg("more than %d distinct cachebust.key_prefix values are in use", kMaxRegisteredPrefixes),
					 errdetail("After a crash the prefix fallback cannot cover the key prefix \"%s\".", prefix)));
		add_prefix(prefix, len);
	}
	LWLockRelease(registry->lock);

	/* (On overflow this also stops the warning repeating in this backend.) */
	memcpy(last_known, prefix, len + 1);
	last_known_valid = true;
}

RegisteredPrefixes
prefix_registry_snapshot()
{
	RegisteredPrefixes out{{}, false, {}};
	if (registry == nullptr)
		return out;
	LWLockAcquire(registry->lock, LW_SHARED);
	for (int i = 0; i < registry->count; i++)
		out.prefixes.emplace_back(registry->prefixes[i], registry->lengths[i]);
	out.overflowed = registry->overflowed;
	out.empty_prefix_source = registry->empty_source;
	LWLockRelease(registry->lock);
	return out;
}

} // namespace cachebust::pg
