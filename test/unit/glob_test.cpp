/*
 * Unit tests: the client-side Redis glob and the GlobSet index.
 *
 * The reference is the real server: a corpus of keys is stored in a
 * redis-server of the test's own, and for every pattern of a corpus (edge
 * cases plus deterministic pseudo-random ones) the keys KEYS returns must be
 * exactly the keys Glob::matches accepts.
 */
#include "core/glob.hpp"

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "redis_server.hpp"

using namespace cachebust;
using namespace std::string_literals;
using cachebust::test::RedisServer;

namespace {

/* Bytes the random keys and patterns are made of: every glob metacharacter,
 * two letters, NUL and bytes that are negative as signed chars. */
const std::string kAlphabet = "ab*?[]^-\\\0\x80\xff"s;

/* A readable rendering of binary bytes for failure messages. */
std::string
show(const std::string &s)
{
	static const char hex[] = "0123456789abcdef";
	std::string out = "\"";
	for (char ch : s) {
		unsigned char c = static_cast<unsigned char>(ch);
		if (c >= 0x20 && c < 0x7f && c != '"') {
			out.push_back(ch);
		} else {
			out += "\\x";
			out.push_back(hex[c >> 4]);
			out.push_back(hex[c & 15]);
		}
	}
	return out + "\"";
}

/* min_len..max_len bytes drawn from alphabet. Raw mt19937 output is the
 * same on every platform (std distributions are not). */
std::string
random_string(std::mt19937 &rng, const std::string &alphabet, size_t min_len, size_t max_len)
{
	size_t len = min_len + rng() % (max_len - min_len + 1);
	std::string s;
	for (size_t i = 0; i < len; i++)
		s.push_back(alphabet[rng() % alphabet.size()]);
	return s;
}

/* Patterns that exercise one Redis rule each. */
std::vector<std::string>
edge_patterns()
{
	return {
		""s, "*"s, "**"s, "***"s, "?"s, "??"s, "*?"s, "?*"s, "*?*"s,
		"a"s, "a*"s, "*a"s, "a**"s, "**a"s, "*a*"s, "a*b"s, "a?b"s, "a*b*"s, "*a*b"s,
		/* sets, negation and unterminated sets */
		"["s, "[^"s, "[]"s, "[]]"s, "[^]"s, "[^]]"s, "[]a]"s, "[^]a]"s, "[a"s, "[ab"s, "[^a"s,
		"[^ab"s, "[ab]"s, "[^ab]"s, "[[]"s, "[^^]"s, "[^-]"s, "[*]"s, "[?]"s, "*["s, "[*"s,
		"?["s, "a["s, "[a]*"s, "*[^a]"s, "[]]*"s, "a[]"s, "a[]*"s, "[^]*"s, "*[^"s,
		/* ranges: reversed, open, with '-' and ']' as ends */
		"[a-b]"s, "[b-a]"s, "[a-c]"s, "[c-a]"s, "[z-a]"s, "[a-"s, "[a-b"s, "[a-]"s, "[a-]]"s,
		"[-a]"s, "[--a]"s, "[a--]"s, "[a-b-c]"s, "[]-a]"s, "[^]-a]"s, "[a-]*"s, "[^a-b]"s,
		"[^b-a]"s, "[*-?]"s, "[?-*]"s, "[^-]]"s,
		/* escapes inside and outside sets, trailing backslash */
		"\\"s, "a\\"s, "*\\"s, "\\\\"s, "\\*"s, "\\?"s, "\\["s, "\\]"s, "\\a"s, "\\^"s,
		"\\-"s, "[\\]]"s, "[\\]"s, "[\\"s, "[^\\"s, "[\\\\]"s, "[\\-]"s, "[a\\-b]"s,
		"[\\a-b]"s, "[a-\\]"s, "[a-\\b]"s, "[^\\]]"s, "[\\^]"s, "[\\^a]"s, "[^\\^]"s,
		"\\[a]"s, "[a\\]"s, "[\\]a]"s, "\\*\\*"s, "*\\*"s, "\\**"s,
		/* bytes >= 0x80 compare as signed chars in ranges */
		"[a-\xff]"s, "[\xff-a]"s, "[\x80-\xff]"s, "[\xff-\x80]"s, "[\x00-\x7f]"s, "[\x7f-\x80]"s,
		"[\x80-\x7f]"s, "[\xff-\x00]"s, "[\x00-\xff]"s, "[^\x80-\xff]"s, "[^\x00-\x7f]"s,
		"[\x80]"s, "[\xff]"s, "[^\xff]"s, "\xff"s, "\x80*"s, "*\xff"s, "[a-\x80]"s, "[-\x80]"s,
		"[\x80-]"s, "[\x80-]]"s,
		/* NUL bytes are ordinary bytes */
		"\0"s, "\0*"s, "*\0"s, "*\0*"s, "[\0]"s, "[\0-a]"s, "[^\0]"s, "\\\0"s, "[\0"s,
		"a\0b"s, "[\x01-\0]"s,
		/* keys from the edge corpus */
		"user:*"s, "user:?"s, "user:[0-9]*"s, "*:profile"s, "user:\\*"s, "*\\[*"s,
	};
}

/* Keys every pattern is checked against. */
std::vector<std::string>
key_corpus()
{
	std::set<std::string> keys;
	keys.insert(""s); /* Redis accepts the empty key */
	for (int b = 0; b < 256; b++)
		keys.insert(std::string(1, static_cast<char>(b)));
	for (char a : kAlphabet)
		for (char b : kAlphabet)
			keys.insert(std::string{a, b});
	for (const char *k : {"abc", "aaaaaaaaaaaa", "ba", "a-b", "]]", "[a]", "a\\", "\\]", "a*b",
						  "user:1", "user:12", "user:*", "user:1:profile", "x:profile", "[]",
						  "[^]", "a]b", "ab]", "[ab", "\\\\", "a*a*b"})
		keys.insert(k);
	keys.insert("x\0y"s);
	keys.insert("\0\0"s);
	keys.insert("\x80\xff\x7f"s);
	std::mt19937 rng(20240611);
	while (keys.size() < 2000)
		keys.insert(random_string(rng, kAlphabet, 1, 7));
	return std::vector<std::string>(keys.begin(), keys.end());
}

class GlobRedisTest : public ::testing::Test
{
  protected:
	static void SetUpTestSuite()
	{
		server = std::make_unique<RedisServer>();
		keys = key_corpus();
		RedisClient c;
		c.connect(server->url(), RedisTimeouts{});
		std::vector<Command> sets;
		for (const std::string &k : keys)
			sets.push_back({"SET", k, "1"});
		for (const Reply &r : c.pipeline(sets))
			ASSERT_FALSE(r.is_error()) << r.str;
		ASSERT_EQ(c.command({"DBSIZE"}).integer, static_cast<long long>(keys.size()));
	}

	static void TearDownTestSuite() { server.reset(); }

	void SetUp() override { client.connect(server->url(), RedisTimeouts{5000, 30000}); }

	/* KEYS p for every pattern, pipelined in chunks. */
	std::vector<std::set<std::string>> redis_keys(const std::vector<std::string> &patterns)
	{
		std::vector<std::set<std::string>> out;
		for (size_t start = 0; start < patterns.size(); start += 100) {
			std::vector<Command> cmds;
			for (size_t i = start; i < std::min(patterns.size(), start + 100); i++)
				cmds.push_back({"KEYS", patterns[i]});
			for (const Reply &r : client.pipeline(cmds)) {
				EXPECT_EQ(r.type, Reply::Type::Array) << r.str;
				std::set<std::string> found;
				for (const Reply &e : r.elements)
					found.insert(e.str);
				out.push_back(std::move(found));
			}
		}
		return out;
	}

	/* The keys of `corpus` that Glob(p) matches. */
	static std::set<std::string> our_keys(const std::string &p, const std::vector<std::string> &corpus)
	{
		Glob g(p);
		std::set<std::string> found;
		for (const std::string &k : corpus)
			if (g.matches(k))
				found.insert(k);
		return found;
	}

	/* Fails (with the first differing keys) unless we agree with Redis on every pattern. */
	void expect_same_as_redis(const std::vector<std::string> &patterns,
							  const std::vector<std::string> &corpus)
	{
		std::vector<std::set<std::string>> expected = redis_keys(patterns);
		ASSERT_EQ(expected.size(), patterns.size());
		int failures = 0;
		for (size_t i = 0; i < patterns.size() && failures < 20; i++) {
			std::set<std::string> ours = our_keys(patterns[i], corpus);
			if (ours == expected[i])
				continue;
			failures++;
			std::string diff;
			for (const std::string &k : expected[i])
				if (!ours.count(k))
					diff += " missing " + show(k);
			for (const std::string &k : ours)
				if (!expected[i].count(k))
					diff += " extra " + show(k);
			ADD_FAILURE() << "pattern " << show(patterns[i]) << ":" << diff.substr(0, 400);
		}
	}

	static std::unique_ptr<RedisServer> server;
	static std::vector<std::string> keys;
	RedisClient client;
};

std::unique_ptr<RedisServer> GlobRedisTest::server;
std::vector<std::string> GlobRedisTest::keys;

} // namespace

TEST_F(GlobRedisTest, EdgePatternsMatchWhatKeysReturns)
{
	expect_same_as_redis(edge_patterns(), keys);
}

TEST_F(GlobRedisTest, RandomPatternsMatchWhatKeysReturns)
{
	/* Letters twice as likely as each metacharacter, so that patterns often
	 * match something; stars and sets still appear in most of them. */
	std::string alphabet = kAlphabet + "ab";
	std::mt19937 rng(7);
	std::set<std::string> patterns;
	while (patterns.size() < 2000)
		patterns.insert(random_string(rng, alphabet, 1, 8));
	expect_same_as_redis(std::vector<std::string>(patterns.begin(), patterns.end()), keys);
}

TEST_F(GlobRedisTest, ScanMatchAgreesToo)
{
	/* The worker uses SCAN MATCH; Redis runs the same matcher as for KEYS. */
	for (const std::string &p : edge_patterns()) {
		std::set<std::string> found;
		std::string cursor = "0";
		do {
			Reply r = client.command({"SCAN", cursor, "MATCH", p, "COUNT", "1000"});
			ASSERT_EQ(r.type, Reply::Type::Array) << r.str;
			ASSERT_EQ(r.elements.size(), 2u);
			cursor = r.elements[0].str;
			for (const Reply &e : r.elements[1].elements)
				found.insert(e.str);
		} while (cursor != "0");
		EXPECT_EQ(found, our_keys(p, keys)) << "pattern " << show(p);
	}
}

TEST_F(GlobRedisTest, StarNestingLimitAndLongKeys)
{
	/* Redis gives up beyond 1000 nested stars (a trailing star does not
	 * nest); consecutive stars count once. Long keys against many stars. */
	RedisClient c;
	c.connect(server->url(), RedisTimeouts{5000, 30000});
	c.command({"SELECT", "1"});
	client.command({"SELECT", "1"});
	std::vector<std::string> corpus;
	for (size_t n : {999, 1000, 1001, 1002, 3000})
		corpus.push_back(std::string(n, 'a'));
	corpus.push_back(std::string(2000, 'a') + "b");
	corpus.push_back(std::string(1000, 'a') + "b" + std::string(1000, 'a'));
	for (const std::string &k : corpus)
		c.command({"SET", k, "1"});

	auto repeat = [](const std::string &unit, size_t n) {
		std::string s;
		for (size_t i = 0; i < n; i++)
			s += unit;
		return s;
	};
	std::vector<std::string> patterns;
	for (size_t n : {999, 1000, 1001, 1002}) {
		patterns.push_back(repeat("*a", n));
		patterns.push_back(repeat("*a", n) + "*");
		patterns.push_back(repeat("**a", n));
		patterns.push_back(repeat("a*", n));
		patterns.push_back(repeat("a*", n) + "b");
	}
	patterns.push_back("*a*a*a*a*a*a*a*a*b");
	patterns.push_back(repeat("a*", 100) + "b");
	patterns.push_back(repeat("*?", 500) + "b");
	patterns.push_back("*b*");
	patterns.push_back("*[^a]*");
	expect_same_as_redis(patterns, corpus);
	c.command({"FLUSHDB"});
}

TEST(Glob, DocumentedQuirks)
{
	/* The empty key: KEYS short-cuts "*", but "**" runs the matcher. */
	EXPECT_TRUE(glob_match("*", ""));
	EXPECT_TRUE(glob_match("", ""));
	EXPECT_FALSE(glob_match("**", ""));
	EXPECT_FALSE(glob_match("[^", ""));
	EXPECT_FALSE(glob_match("", "a"));
	/* Unterminated sets end at the end of the pattern. */
	EXPECT_TRUE(glob_match("[abc", "b"));
	EXPECT_FALSE(glob_match("[abc", "bc"));
	EXPECT_FALSE(glob_match("[", "["));
	EXPECT_TRUE(glob_match("[^", "x"));
	EXPECT_TRUE(glob_match("[\\]", "]"));
	EXPECT_TRUE(glob_match("[\\", "\\"));
	/* "[]" is an empty set: "[]]" never matches. */
	EXPECT_FALSE(glob_match("[]]", "]"));
	EXPECT_FALSE(glob_match("[]]", "]]"));
	EXPECT_TRUE(Glob("a[]b*").matches_nothing());
	/* "]" can end a range: "[a-]" is the range ']'..'a' and stays open. */
	EXPECT_TRUE(glob_match("[a-]", "^"));
	EXPECT_FALSE(glob_match("[a-]", "-"));
	/* Reversed and signed ranges. */
	EXPECT_TRUE(glob_match("[z-a]", "m"));
	EXPECT_TRUE(glob_match("[a-\xff]", "\xff"));
	EXPECT_TRUE(glob_match("[a-\xff]", "\x01"));
	EXPECT_FALSE(glob_match("[a-\xff]", "\x80"));
	EXPECT_FALSE(glob_match("[a-\xff]", "b"));
	/* Escapes and a trailing backslash. */
	EXPECT_TRUE(glob_match("a\\*", "a*"));
	EXPECT_FALSE(glob_match("a\\*", "ab"));
	EXPECT_TRUE(glob_match("a\\", "a\\"));
	/* Binary keys and patterns. */
	EXPECT_TRUE(glob_match("x\0*"s, "x\0yz"s));
	EXPECT_FALSE(glob_match("x\0*"s, "x"s));
}

TEST(Glob, LiteralPrefixAndSuffix)
{
	Glob g("user\\*:[1]x*:\\?[^a]end");
	EXPECT_EQ(g.pattern(), "user\\*:[1]x*:\\?[^a]end");
	EXPECT_EQ(g.literal_prefix(), "user*:1x");
	EXPECT_EQ(g.literal_suffix(), "end");
	EXPECT_EQ(Glob("?abc").literal_prefix(), "");
	EXPECT_EQ(Glob("?abc").literal_suffix(), "abc");
	EXPECT_EQ(Glob("abc").literal_prefix(), "abc");
	EXPECT_EQ(Glob("abc\\").literal_suffix(), "abc\\");
	EXPECT_EQ(Glob("a[^]b").literal_prefix(), "a");
	EXPECT_EQ(Glob("*").literal_prefix(), "");
	EXPECT_EQ(Glob("[").literal_prefix(), "");
}

/* What cachebust accepts as a glob when key_prefix is empty: one whose
 * every match starts with the same literal bytes. Decided on what the glob
 * matches, so sets, classes and escapes are read as Redis reads them. */
TEST(Glob, LiteralStart)
{
	for (const char *confined : {"user:*", "u", "\\*", "\\?x", "[u]ser:*", "[uu]*", "u[^a]*", "\\"})
		EXPECT_TRUE(glob_has_literal_start(confined)) << confined;
	for (const char *open : {"*", "?*", "**", "?", "[^\x01]*", "[a-z]*", "[^", "[^]*", "[ab]c*", "*:profile",
							 "?user:*", "", "[]", "["})
		EXPECT_FALSE(glob_has_literal_start(open)) << open;
	/* The pattern with one literal byte first matches no key with another first byte. */
	Glob g("[u]*");
	for (int c = 0; c < 256; c++)
		EXPECT_EQ(g.matches(std::string(1, static_cast<char>(c)) + "ser"), c == 'u');
}

TEST(Glob, PathologicalPatternsFinish)
{
	/* Greedy star backtracking: O(pattern * key), never exponential. No
	 * timing assertion; the test would simply hang otherwise. */
	std::string key(100000, 'a');
	std::string many;
	for (int i = 0; i < 200; i++)
		many += "a*";
	EXPECT_FALSE(Glob(many + "b").matches(key));
	EXPECT_TRUE(Glob(many).matches(key));
	EXPECT_FALSE(Glob("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b").matches(key));
	EXPECT_TRUE(Glob("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*").matches(key));
	EXPECT_FALSE(Glob("*?*?*?*?*?*?*?*?*?*?*?*?[^a]").matches(key));
	std::string stars;
	for (int i = 0; i < 1000; i++)
		stars += "*?";
	EXPECT_TRUE(Glob(stars).matches(key));
	EXPECT_FALSE(Glob(stars + "b").matches(key));
	EXPECT_TRUE(Glob(stars + "*").matches(key));
	EXPECT_FALSE(Glob(stars + "*?").matches(key)); /* 1001 nested stars */
}

TEST(GlobSet, MatchesExactlyTheGlobsThatMatch)
{
	std::mt19937 rng(99);
	const std::string alphabet = "abc:*?[]^-\\"s;
	const std::string letters = "abc:";
	GlobSet set;
	std::vector<std::string> patterns;
	for (int i = 0; i < 3000; i++) {
		std::string p;
		switch (rng() % 4) {
		case 0: /* literal prefix, then anything */
			p = random_string(rng, letters, 0, 5) + random_string(rng, alphabet, 0, 4);
			break;
		case 1: /* anything, then a literal suffix */
			p = random_string(rng, alphabet, 0, 4) + random_string(rng, letters, 0, 5);
			break;
		default:
			p = random_string(rng, alphabet, 0, 7);
			break;
		}
		patterns.push_back(p);
		size_t before = set.size();
		size_t id = set.add(p);
		EXPECT_LE(id, before);
		EXPECT_EQ(set.glob(id).pattern(), p);
	}

	std::vector<std::string> corpus = {""};
	for (int i = 0; i < 3000; i++)
		corpus.push_back(random_string(rng, i % 3 ? letters : alphabet, 1, 9));
	size_t evaluated = 0;
	size_t matched = 0;
	for (const std::string &key : corpus) {
		std::vector<int> seen(set.size(), 0);
		set.for_each_match(key, [&](size_t id) {
			ASSERT_LT(id, set.size());
			seen[id]++;
		});
		std::vector<int> candidates(set.size(), 0);
		set.for_each_candidate(key, [&](size_t id) { candidates[id]++; });
		for (size_t id = 0; id < set.size(); id++) {
			bool match = set.glob(id).matches(key);
			ASSERT_EQ(seen[id], match ? 1 : 0)
				<< "key " << show(key) << " pattern " << show(set.glob(id).pattern());
			ASSERT_LE(candidates[id], 1);
			if (match) {
				ASSERT_EQ(candidates[id], 1);
			}
		}
		evaluated += set.candidate_count(key);
		matched += std::count(seen.begin(), seen.end(), 1);
	}
	/* The index must actually prune: far fewer evaluations than pairs. */
	EXPECT_GT(matched, 0u);
	EXPECT_LT(evaluated, corpus.size() * set.size() / 4);
}

TEST(GlobSet, DuplicatesShareAnIdAndClearResets)
{
	GlobSet set;
	EXPECT_TRUE(set.empty());
	EXPECT_EQ(set.add("user:*"), 0u);
	EXPECT_EQ(set.add("user:**"), 1u); /* equivalent, but another pattern */
	EXPECT_EQ(set.add("user:*"), 0u);
	EXPECT_EQ(set.add("user:\0*"s), 2u);
	EXPECT_EQ(set.add("user:"), 3u);
	EXPECT_EQ(set.add("user:\0*"s), 2u);
	EXPECT_EQ(set.size(), 4u);

	std::vector<size_t> ids;
	set.for_each_match("user:1", [&](size_t id) { ids.push_back(id); });
	std::sort(ids.begin(), ids.end());
	EXPECT_EQ(ids, (std::vector<size_t>{0, 1}));

	set.clear();
	EXPECT_TRUE(set.empty());
	EXPECT_EQ(set.add("other"), 0u);
	EXPECT_EQ(set.candidate_count("user:1"), 0u);
}

TEST(GlobSet, EmptyKeyAndUnindexableGlobs)
{
	GlobSet set;
	size_t all = set.add("*");
	size_t stars = set.add("**");
	size_t empty = set.add("");
	size_t never = set.add("x[]");
	size_t any = set.add("?*");
	std::vector<size_t> ids;
	set.for_each_match("", [&](size_t id) { ids.push_back(id); });
	std::sort(ids.begin(), ids.end());
	EXPECT_EQ(ids, (std::vector<size_t>{all, empty}));
	ids.clear();
	set.for_each_match("x", [&](size_t id) { ids.push_back(id); });
	std::sort(ids.begin(), ids.end());
	EXPECT_EQ(ids, (std::vector<size_t>{all, stars, any}));
	/* A glob that can match nothing is never even a candidate. */
	set.for_each_candidate("x]", [&](size_t id) { EXPECT_NE(id, never); });
}

TEST(GlobSet, IndexEvaluatesOnlyCandidates)
{
	GlobSet set;
	for (int n = 0; n < 1000; n++)
		set.add("nomatch:" + std::to_string(n) + "*");
	for (int n = 0; n < 1000; n++)
		set.add("*:nomatch:" + std::to_string(n));
	size_t everything = set.add("*");
	ASSERT_EQ(set.size(), 2001u);

	/* 100k keys none of the 2000 indexed globs can match: each key's only
	 * candidate is "*", whatever the number of globs. */
	size_t candidates = 0;
	size_t matches = 0;
	for (int i = 0; i < 100000; i++) {
		std::string key = "user:" + std::to_string(i) + ":profile";
		candidates += set.candidate_count(key);
		set.for_each_match(key, [&](size_t id) {
			EXPECT_EQ(id, everything);
			matches++;
		});
	}
	EXPECT_EQ(candidates, 100000u);
	EXPECT_EQ(matches, 100000u);

	/* A key under the prefixes: candidates are the globs whose prefix it
	 * has (nomatch:1*, nomatch:12*, nomatch:123*), plus "*". */
	EXPECT_EQ(set.candidate_count("nomatch:123:x"), 4u);
	std::vector<std::string> hits;
	set.for_each_match("nomatch:123:x", [&](size_t id) { hits.push_back(set.glob(id).pattern()); });
	std::sort(hits.begin(), hits.end());
	EXPECT_EQ(hits, (std::vector<std::string>{"*", "nomatch:1*", "nomatch:12*", "nomatch:123*"}));

	/* And by suffix: of the 1000 suffix globs only "*:nomatch:77" has a
	 * suffix "a:nomatch:77" ends with (":nomatch:7" is not one). */
	EXPECT_EQ(set.candidate_count("a:nomatch:77"), 2u);
	EXPECT_EQ(set.candidate_count("x:nomatch:77"), 2u);
	hits.clear();
	set.for_each_match("a:nomatch:77", [&](size_t id) { hits.push_back(set.glob(id).pattern()); });
	std::sort(hits.begin(), hits.end());
	EXPECT_EQ(hits, (std::vector<std::string>{"*", "*:nomatch:77"}));
}
