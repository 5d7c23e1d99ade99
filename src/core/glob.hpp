/*
 * glob.hpp — Redis's KEYS / SCAN MATCH glob, evaluated on our side.
 *
 * The worker scans Redis once per batch and decides locally which keys each
 * pending pattern covers, instead of one SCAN MATCH per pattern. That only
 * stays correct if a Glob selects exactly the keys Redis would, so the rules
 * below are those of the server (verified against redis-server by
 * test/unit/glob_test.cpp), quirks included:
 *
 *   *       any run of bytes; consecutive stars are one star
 *   ?       one byte
 *   [...]   one byte of the set; [^...] one byte not in it; a-z is a range,
 *           a reversed range is swapped, and range ends compare as *signed*
 *           chars (x86 Redis), so [a-\xff] means -1..97
 *   \x      the byte x, inside and outside sets; a trailing \ is itself
 *   [abc    the end of the pattern closes an open set; "[" alone and "[]"
 *           match nothing, "[^" and "[^]" match any byte
 *   ""      the empty key matches only the pattern "" and the pattern "*"
 *           (KEYS and SCAN skip matching for "*"; "**" does not match it)
 *   stars   a pattern needing more than 1000 nested stars matches nothing
 *           (Redis's guard against abusive patterns, CVE-2024-31228)
 *
 * Keys and patterns are binary. Matching tokenizes the pattern once and then
 * runs the greedy last-star backtracking loop, which is complete here because
 * every token other than a star consumes exactly one byte; a hostile pattern
 * costs at most O(len(pattern) * len(key)), never exponential time.
 *
 * GlobSet indexes many globs by their literal prefix or suffix in a radix
 * tree so that matching one key costs about O(len(key) + candidates),
 * whatever the number of globs.
 */
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cachebust {

/* Stars beyond this many nested ones make Redis give up on a match. */
constexpr size_t kRedisGlobStarLimit = 1000;

/* One compiled glob. Compiling tokenizes the pattern exactly as Redis reads it. */
class Glob
{
  public:
	explicit Glob(std::string_view pattern);

	/* Whether KEYS pattern / SCAN MATCH pattern would return key. */
	bool matches(std::string_view key) const;

	const std::string &pattern() const { return pattern_; }

	/* Bytes every matching key starts with (escapes resolved). */
	const std::string &literal_prefix() const { return prefix_; }

	/* Bytes every matching non-empty key ends with (escapes resolved). */
	const std::string &literal_suffix() const { return suffix_; }

	/* True when no key at all can match (e.g. "[]" or "a[]b"). */
	bool matches_nothing() const { return nothing_; }

  private:
	enum class Kind : uint8_t { Byte, Any, Set, Star };

	struct Token {
		Kind kind;
		uint8_t byte;	  /* Byte */
		uint32_t set = 0; /* Set: index into sets_ */
	};

	/* 256 bits, one per byte value. */
	using ByteSet = std::array<uint64_t, 4>;

	size_t parse_set(std::string_view p, size_t i);
	void push(Kind kind, uint8_t byte = 0, uint32_t set = 0);
	bool token_matches(const Token &t, uint8_t c) const;
	bool match_tokens(std::string_view key) const;

	std::string pattern_;
	std::string prefix_;
	std::string suffix_;
	/* The whole pattern, stars collapsed; the prefix is not skipped. */
	std::vector<Token> tokens_;
	std::vector<ByteSet> sets_;
	/* Bytes a match consumes outside stars. */
	size_t fixed_len_ = 0;
	bool has_star_ = false;
	bool nothing_ = false;
	/* Exactly "*": KEYS and SCAN return every key without matching. */
	bool everything_ = false;
};

/* Whether KEYS pattern would return key (compiles the pattern each call). */
bool glob_match(std::string_view pattern, std::string_view key);

/*
 * Whether every key the glob can match starts with the same literal bytes:
 * its first construct, as Redis reads it, stands for one fixed byte (a
 * plain byte, an escape, a set of one byte such as "[u]"). With an empty
 * key_prefix cachebust accepts only such globs: one that can begin with more
 * than one byte ("*", "?x", "[^\x01]*", "[a-z]*", "*:profile") reaches the
 * keys of every application in the Redis database. Decided on the glob's
 * meaning, not its spelling; a glob that matches nothing is refused too.
 */
bool glob_has_literal_start(std::string_view pattern);

/*
 * Many globs, indexed so that matching one key costs about
 * O(len(key) + candidates), not O(number of globs).
 *
 * Each glob goes into one of two radix trees: the prefix tree under its
 * literal prefix, or the suffix tree under its reversed literal suffix when
 * that is longer (so "*:profile" is no candidate for "user:1"). A key walks
 * the prefix tree forwards and the suffix tree backwards; the globs stored
 * on the nodes it passes are the candidates, and only they are evaluated.
 * Globs with neither a prefix nor a suffix ("*", "?x*y?") sit at a root and
 * are candidates for every key; globs that can match nothing are not indexed.
 */
class GlobSet
{
  public:
	GlobSet();

	/* Returns the glob's id (0, 1, 2, ...); an identical pattern returns its
	 * existing id. */
	size_t add(std::string_view pattern);

	size_t size() const { return globs_.size(); }
	bool empty() const { return globs_.empty(); }
	void clear();

	const Glob &glob(size_t id) const { return globs_[id]; }

	/* Calls f(id) for every glob that matches key (each id at most once). */
	template <typename F>
	void for_each_match(std::string_view key, F &&f) const
	{
		for_each_candidate(key, [&](size_t id) {
			if (globs_[id].matches(key))
				f(id);
		});
	}

	/* Calls f(id) for every glob for_each_match evaluates for key: those
	 * whose indexed prefix or suffix key has (each id at most once). */
	template <typename F>
	void for_each_candidate(std::string_view key, F &&f) const
	{
		prefixes_.walk(key, false, f);
		suffixes_.walk(key, true, f);
	}

	/* How many globs for_each_match evaluates for key. */
	size_t candidate_count(std::string_view key) const;

  private:
	/* A radix tree of byte strings, each node holding glob ids. */
	class Radix
	{
	  public:
		Radix() { clear(); }
		void insert(std::string_view bytes, uint32_t id);
		void clear();

		/* f(id) for the ids on every node whose path is a prefix of key
		 * (of reversed key when backwards). */
		template <typename F>
		void walk(std::string_view key, bool backwards, F &f) const
		{
			uint32_t node = 0;
			size_t pos = 0;
			for (;;) {
				const Node &n = nodes_[node];
				for (uint32_t id : n.ids)
					f(static_cast<size_t>(id));
				if (pos == key.size() || n.firsts.empty())
					return;
				const void *hit = std::memchr(n.firsts.data(), byte_at(key, pos, backwards),
											  n.firsts.size());
				if (hit == nullptr)
					return;
				uint32_t child = n.children[static_cast<const char *>(hit) - n.firsts.data()];
				const std::string &label = nodes_[child].label;
				if (key.size() - pos < label.size())
					return;
				for (size_t i = 1; i < label.size(); i++)
					if (label[i] != byte_at(key, pos + i, backwards))
						return;
				pos += label.size();
				node = child;
			}
		}

	  private:
		struct Node {
			/* bytes on the edge from the parent (in walk order) */
			std::string label;
			/* first byte of each child's label, parallel to children */
			std::string firsts;
			std::vector<uint32_t> children;
			std::vector<uint32_t> ids;
		};

		/* The pos-th byte of key in walk order. */
		static char byte_at(std::string_view key, size_t pos, bool backwards)
		{
			return backwards ? key[key.size() - 1 - pos] : key[pos];
		}

		std::vector<Node> nodes_;
	};

	std::vector<Glob> globs_;
	std::unordered_map<std::string, uint32_t> ids_;
	Radix prefixes_;
	Radix suffixes_;
};

} // namespace cachebust
