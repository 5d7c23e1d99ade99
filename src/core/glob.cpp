/*
 * glob.cpp — tokenizing and matching Redis globs, and the GlobSet index.
 *
 * The tokenizer is the only place that knows Redis's reading of a pattern
 * (escapes, sets, ranges, unterminated sets); everything after it works on
 * tokens that each consume one byte, plus collapsed stars.
 */
#include "core/glob.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* Adds byte b to set. */
void
set_add(std::array<uint64_t, 4> &set, uint8_t b)
{
	set[b >> 6] |= uint64_t(1) << (b & 63);
}

/* Number of bytes in set. */
int
set_count(const std::array<uint64_t, 4> &set)
{
	int count = 0;
	for (uint64_t word : set)
		count += __builtin_popcountll(word);
	return count;
}

/* The only byte in a set of one. */
uint8_t
set_first(const std::array<uint64_t, 4> &set)
{
	for (int w = 0; w < 4; w++)
		if (set[w] != 0)
			return static_cast<uint8_t>(w * 64 + __builtin_ctzll(set[w]));
	return 0;
}

} // namespace

/* Tokenizes pattern as Redis reads it and derives the cheap pre-checks. */
Glob::Glob(std::string_view pattern) : pattern_(pattern), everything_(pattern == "*")
{
	size_t i = 0;
	while (i < pattern.size()) {
		uint8_t c = static_cast<uint8_t>(pattern[i]);
		switch (c) {
		case '*':
			push(Kind::Star);
			i++;
			break;
		case '?':
			push(Kind::Any);
			i++;
			break;
		case '[':
			i = parse_set(pattern, i + 1);
			break;
		case '\\':
			/* A trailing backslash stands for itself. */
			if (i + 1 < pattern.size())
				i++;
			push(Kind::Byte, static_cast<uint8_t>(pattern[i]));
			i++;
			break;
		default:
			push(Kind::Byte, c);
			i++;
			break;
		}
	}

	/* Redis recurses once per star that has something after it. */
	size_t nested_stars = 0;
	for (size_t t = 0; t < tokens_.size(); t++) {
		if (tokens_[t].kind != Kind::Star) {
			fixed_len_++;
		} else {
			has_star_ = true;
			if (t + 1 < tokens_.size())
				nested_stars++;
		}
	}
	if (nested_stars > kRedisGlobStarLimit)
		nothing_ = true;

	for (const Token &t : tokens_) {
		if (t.kind != Kind::Byte)
			break;
		prefix_.push_back(static_cast<char>(t.byte));
	}
	for (auto t = tokens_.rbegin(); t != tokens_.rend() && t->kind == Kind::Byte; ++t)
		suffix_.push_back(static_cast<char>(t->byte));
	std::reverse(suffix_.begin(), suffix_.end());
}

/* Reads the set whose body starts at p[i] (after '['); returns where it ends. */
size_t
Glob::parse_set(std::string_view p, size_t i)
{
	ByteSet set{};
	bool negate = i < p.size() && p[i] == '^';
	if (negate)
		i++;
	/* No closing bracket: the end of the pattern closes the set. */
	while (i < p.size()) {
		if (p[i] == '\\' && i + 1 < p.size()) {
			set_add(set, static_cast<uint8_t>(p[i + 1]));
			i += 2;
		} else if (p[i] == ']') {
			i++;
			break;
		} else if (i + 2 < p.size() && p[i + 1] == '-') {
			/* Range ends compare as signed chars, as in Redis on x86. */
			int lo = static_cast<signed char>(p[i]);
			int hi = static_cast<signed char>(p[i + 2]);
			if (lo > hi)
				std::swap(lo, hi);
			for (int v = lo; v <= hi; v++)
				set_add(set, static_cast<uint8_t>(v));
			i += 3;
		} else {
			set_add(set, static_cast<uint8_t>(p[i]));
			i++;
		}
	}
	if (negate)
		for (uint64_t &word : set)
			word = ~word;

	int count = set_count(set);
	if (count == 256) {
		push(Kind::Any);
	} else if (count == 1) {
		push(Kind::Byte, set_first(set));
	} else {
		if (count == 0)
			nothing_ = true;
		sets_.push_back(set);
		push(Kind::Set, 0, static_cast<uint32_t>(sets_.size() - 1));
	}
	return i;
}

/* Appends a token; a star right after a star is the same star. */
void
Glob::push(Kind kind, uint8_t byte, uint32_t set)
{
	if (kind == Kind::Star && !tokens_.empty() && tokens_.back().kind == Kind::Star)
		return;
	tokens_.push_back(Token{kind, byte, set});
}

/* Whether a non-star token accepts byte c. */
bool
Glob::token_matches(const Token &t, uint8_t c) const
{
	switch (t.kind) {
	case Kind::Byte:
		return t.byte == c;
	case Kind::Any:
		return true;
	case Kind::Set:
		return (sets_[t.set][c >> 6] >> (c & 63)) & 1;
	case Kind::Star:
		break;
	}
	return false;
}

/* Cheap rejections first (length, prefix, suffix), then the token walk. */
bool
Glob::matches(std::string_view key) const
{
	if (everything_)
		return true;
	/* Redis never enters its loop for an empty key: "**" does not match it. */
	if (key.empty())
		return pattern_.empty();
	if (nothing_)
		return false;
	if (has_star_ ? key.size() < fixed_len_ : key.size() != fixed_len_)
		return false;
	if (std::memcmp(key.data(), prefix_.data(), prefix_.size()) != 0 ||
		std::memcmp(key.data() + key.size() - suffix_.size(), suffix_.data(), suffix_.size()) != 0)
		return false;
	if (prefix_.size() == tokens_.size())
		return true;
	return match_tokens(key);
}

/* Matches the tokens after the literal prefix against the rest of key. */
bool
Glob::match_tokens(std::string_view key) const
{
	/*
	 * Greedy matching with a single backtrack point, the last star: when a
	 * later token fails, that star absorbs one more byte and matching resumes
	 * after it. Earlier stars never need revisiting because each other token
	 * consumes exactly one byte, so O(tokens * key) in the worst case.
	 */
	const size_t none = static_cast<size_t>(-1);
	size_t t = prefix_.size();
	size_t k = prefix_.size();
	size_t star_t = none;
	size_t star_k = 0;
	while (k < key.size()) {
		if (t < tokens_.size()) {
			const Token &tok = tokens_[t];
			if (tok.kind == Kind::Star) {
				star_t = ++t;
				star_k = k;
				if (star_t == tokens_.size())
					return true;
				continue;
			}
			if (token_matches(tok, static_cast<uint8_t>(key[k]))) {
				t++;
				k++;
				continue;
			}
		}
		if (star_t == none)
			return false;
		t = star_t;
		k = ++star_k;
	}
	while (t < tokens_.size() && tokens_[t].kind == Kind::Star)
		t++;
	return t == tokens_.size();
}

/* One-off match, compiling the pattern. */
bool
glob_match(std::string_view pattern, std::string_view key)
{
	return Glob(pattern).matches(key);
}

/* The tokenizer resolves escapes and one-byte sets into literal bytes. */
bool
glob_has_literal_start(std::string_view pattern)
{
	if (pattern.empty())
		return false;
	switch (pattern[0]) {
	case '*':
	case '?':
	case '[':
	case '\\':
		return !Glob(pattern).literal_prefix().empty();
	default:
		return true; /* a plain first byte: no need to compile (the common case, once per row) */
	}
}

/* An empty set: both trees hold just their root. */
GlobSet::GlobSet() = default;

/* Compiles and indexes pattern unless it is already in the set. */
size_t
GlobSet::add(std::string_view pattern)
{
	std::string text(pattern);
	auto found = ids_.find(text);
	if (found != ids_.end())
		return found->second;

	uint32_t id = static_cast<uint32_t>(globs_.size());
	globs_.emplace_back(pattern);
	ids_.emplace(std::move(text), id);

	const Glob &g = globs_.back();
	if (g.matches_nothing())
		return id;
	if (g.literal_suffix().size() > g.literal_prefix().size()) {
		std::string reversed(g.literal_suffix().rbegin(), g.literal_suffix().rend());
		suffixes_.insert(reversed, id);
	} else {
		prefixes_.insert(g.literal_prefix(), id);
	}
	return id;
}

/* Forgets every glob; ids start again at 0. */
void
GlobSet::clear()
{
	globs_.clear();
	ids_.clear();
	prefixes_.clear();
	suffixes_.clear();
}

/* Counts what for_each_candidate would report. */
size_t
GlobSet::candidate_count(std::string_view key) const
{
	size_t count = 0;
	for_each_candidate(key, [&](size_t) { count++; });
	return count;
}

/* Stores id on the node for bytes, splitting an edge if needed. */
void
GlobSet::Radix::insert(std::string_view bytes, uint32_t id)
{
	uint32_t node = 0;
	size_t pos = 0;
	while (pos < bytes.size()) {
		Node &parent = nodes_[node];
		const void *hit = std::memchr(parent.firsts.data(), bytes[pos], parent.firsts.size());
		if (hit == nullptr) {
			Node leaf;
			leaf.label = std::string(bytes.substr(pos));
			leaf.ids.push_back(id);
			parent.firsts.push_back(bytes[pos]);
			parent.children.push_back(static_cast<uint32_t>(nodes_.size()));
			nodes_.push_back(std::move(leaf));
			return;
		}
		size_t slot = static_cast<const char *>(hit) - parent.firsts.data();
		uint32_t child = parent.children[slot];
		const std::string &label = nodes_[child].label;
		size_t common = 1;
		while (common < label.size() && pos + common < bytes.size() &&
			   label[common] == bytes[pos + common])
			common++;
		if (common < label.size()) {
			/* Split the edge; the new middle node holds the shared bytes. */
			Node middle;
			middle.label = label.substr(0, common);
			middle.firsts.push_back(label[common]);
			middle.children.push_back(child);
			nodes_[child].label.erase(0, common);
			uint32_t m = static_cast<uint32_t>(nodes_.size());
			nodes_[node].children[slot] = m;
			nodes_.push_back(std::move(middle));
			child = m;
		}
		node = child;
		pos += common;
	}
	nodes_[node].ids.push_back(id);
}

/* Back to a lone root (empty label, no ids). */
void
GlobSet::Radix::clear()
{
	nodes_.assign(1, Node{});
}

} // namespace cachebust
