/*
 * glob_fuzz.cpp — libFuzzer target for the Redis glob and GlobSet.
 *
 * The first input byte says how many of the following bytes are the
 * pattern; the rest is the key. Glob::matches must agree with a reference
 * written here as a direct recursive reading of Redis's rules on the raw
 * pattern text (no tokenizer, memoized so that it stays cheap), and a
 * GlobSet holding patterns derived from the input must report exactly the
 * globs that match, each once; and glob_has_literal_start (the rule for an
 * empty key_prefix) must agree with what the glob matches. Any
 * disagreement, crash or sanitizer report is a bug.
 */
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/glob.hpp"

using namespace cachebust;

namespace {

/* Inputs longer than this are not compared with the reference. */
constexpr size_t kReferenceMax = 64;

/* Whether byte c is in the set whose body starts at p[i] (just after '[');
 * *next is set to the first byte after the set. */
bool
ref_in_set(const std::string &p, size_t i, unsigned char c, size_t *next)
{
	bool negate = i < p.size() && p[i] == '^';
	if (negate)
		i++;
	bool in = false;
	for (;;) {
		if (i >= p.size())
			break; /* the end of the pattern closes the set */
		if (p[i] == '\\' && i + 1 < p.size()) {
			in = in || static_cast<unsigned char>(p[i + 1]) == c;
			i += 2;
		} else if (p[i] == ']') {
			i++;
			break;
		} else if (i + 2 < p.size() && p[i + 1] == '-') {
			/* range ends and the byte compare as signed chars */
			int lo = static_cast<signed char>(p[i]);
			int hi = static_cast<signed char>(p[i + 2]);
			int v = static_cast<signed char>(c);
			if (lo > hi)
				std::swap(lo, hi);
			in = in || (lo <= v && v <= hi);
			i += 3;
		} else {
			in = in || static_cast<unsigned char>(p[i]) == c;
			i++;
		}
	}
	*next = i;
	return in != negate;
}

struct Reference {
	const std::string &p;
	const std::string &k;
	std::vector<int8_t> memo; /* (pi, ki) -> -1 unknown, 0, 1 */

	Reference(const std::string &pattern, const std::string &key)
		: p(pattern), k(key), memo((pattern.size() + 1) * (key.size() + 1), -1)
	{
	}

	/* Whether p[pi..] matches k[ki..]: a star takes any run of bytes, every
	 * other construct exactly one byte. */
	bool rest(size_t pi, size_t ki)
	{
		int8_t &m = memo[pi * (k.size() + 1) + ki];
		if (m < 0)
			m = compute(pi, ki) ? 1 : 0;
		return m == 1;
	}

	/* One step of rest(). */
	bool compute(size_t pi, size_t ki)
	{
		if (pi == p.size())
			return ki == k.size();
		if (p[pi] == '*') {
			for (size_t j = ki; j <= k.size(); j++)
				if (rest(pi + 1, j))
					return true;
			return false;
		}
		if (ki == k.size())
			return false;
		unsigned char c = static_cast<unsigned char>(k[ki]);
		if (p[pi] == '?')
			return rest(pi + 1, ki + 1);
		if (p[pi] == '[') {
			size_t next;
			return ref_in_set(p, pi + 1, c, &next) && rest(next, ki + 1);
		}
		/* a backslash escapes the next byte; a trailing one is literal */
		size_t at = (p[pi] == '\\' && pi + 1 < p.size()) ? pi + 1 : pi;
		return static_cast<unsigned char>(p[at]) == c && rest(at + 1, ki + 1);
	}
};

/* What KEYS pattern returns for key, by the reference. */
bool
ref_match(const std::string &p, const std::string &k)
{
	if (p == "*")
		return true; /* KEYS and SCAN skip matching for "*" */
	if (k.empty())
		return p.empty(); /* Redis's matching loop never runs for "" */
	return Reference(p, k).rest(0, 0);
}

/* p with every glob metacharacter escaped. */
std::string
escape(const std::string &p)
{
	std::string out;
	for (char c : p) {
		if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\')
			out.push_back('\\');
		out.push_back(c);
	}
	return out;
}

/* Checks one pattern against one key. */
void
check_pair(const std::string &p, const std::string &k)
{
	Glob g(p);
	bool m = g.matches(k);
	if (p.size() <= kReferenceMax && k.size() <= kReferenceMax && m != ref_match(p, k))
		__builtin_trap();
	if (m != glob_match(p, k))
		__builtin_trap();
	if (m && g.matches_nothing())
		__builtin_trap();
	if (m && !k.empty()) {
		const std::string &pre = g.literal_prefix();
		const std::string &suf = g.literal_suffix();
		if (k.compare(0, pre.size(), pre) != 0)
			__builtin_trap();
		if (k.size() < suf.size() || k.compare(k.size() - suf.size(), suf.size(), suf) != 0)
			__builtin_trap();
	}
}

/*
 * The empty-prefix rule, checked on meaning against the matcher: a glob
 * judged to have a literal start matches no key beginning with another
 * byte; a glob judged not to have one, if it matches key at all, also
 * matches a key with another first byte (so refusing it was right).
 */
void
check_literal_start(const std::string &p, const std::string &k)
{
	Glob g(p);
	bool literal = glob_has_literal_start(p);
	if (literal != !g.literal_prefix().empty())
		__builtin_trap(); /* the fast path agrees with the tokenizer */
	if (k.empty())
		return;
	std::string rest = k.substr(1);
	if (literal) {
		/* Probes: the key's own first byte, the neighbours of the literal one, the glob metacharacters. */
		unsigned char first = static_cast<unsigned char>(g.literal_prefix()[0]);
		for (int c : {static_cast<int>(static_cast<unsigned char>(k[0])), first - 1, first + 1, 0, 0x7f, 0x80, 0xff,
					  int{'*'}, int{'?'}, int{'['}, int{'\\'}, int{'a'}}) {
			if ((c & 0xff) == first)
				continue;
			if (g.matches(static_cast<char>(c) + rest) || g.matches(static_cast<char>(c) + k))
				__builtin_trap();
		}
	} else if (g.matches(k)) {
		bool other_first_byte = false;
		for (int c = 0; c < 256 && !other_first_byte; c++)
			if (c != static_cast<unsigned char>(k[0]))
				other_first_byte = g.matches(static_cast<char>(c) + rest) || g.matches(static_cast<char>(c) + k);
		if (!other_first_byte)
			__builtin_trap();
	}
}

} // namespace

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t plen = data[0];
	if (plen > size - 1)
		plen = size - 1;
	std::string pattern(reinterpret_cast<const char *>(data + 1), plen);
	std::string key(reinterpret_cast<const char *>(data + 1 + plen), size - 1 - plen);

	std::vector<std::string> patterns = {pattern, pattern + "*", "*" + pattern, "?" + pattern,
										 escape(key), escape(key) + "*", "*" + escape(key), "*",
										 ""};
	for (size_t i = 0; i < pattern.size() && i < 8; i++)
		patterns.push_back(pattern.substr(0, i) + "*");
	std::vector<std::string> keys = {key, pattern, key + key, "", key.substr(0, key.size() / 2)};

	for (const std::string &p : patterns) {
		check_pair(p, key);
		check_literal_start(p, key);
	}
	check_pair(pattern, pattern);
	check_pair(pattern, key + key);
	/* An escaped key matches itself and nothing else. */
	if (!Glob(escape(key)).matches(key))
		__builtin_trap();
	if (Glob(escape(key)).matches(key + "x"))
		__builtin_trap();

	GlobSet set;
	std::vector<size_t> ids;
	for (const std::string &p : patterns)
		ids.push_back(set.add(p));
	for (size_t i = 0; i < patterns.size(); i++) {
		if (set.add(patterns[i]) != ids[i] || set.glob(ids[i]).pattern() != patterns[i])
			__builtin_trap();
	}
	for (const std::string &k : keys) {
		std::vector<int> seen(set.size(), 0);
		set.for_each_match(k, [&](size_t id) {
			if (id >= seen.size())
				__builtin_trap();
			seen[id]++;
		});
		for (size_t id = 0; id < set.size(); id++)
			if (seen[id] != (set.glob(id).matches(k) ? 1 : 0))
				__builtin_trap();
	}
	set.clear();
	if (!set.empty() || set.add(pattern) != 0)
		__builtin_trap();
	return 0;
}
