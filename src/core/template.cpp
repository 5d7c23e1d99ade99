/*
 * template.cpp — parsing trigger arguments and rendering targets.
 */
#include "core/template.hpp"

#include <algorithm>
#include <cstdint>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

std::string
quoted(std::string_view s)
{
	return "\"" + std::string(s) + "\"";
}

[[noreturn]] void
malformed(std::string_view arg, const std::string &why)
{
	throw TargetError("malformed template " + quoted(arg) + ": " + why);
}

bool
is_kind_word(std::string_view word)
{
	if (word.empty())
		return false;
	for (char c : word)
		if (!((c >= 'a' && c <= 'z') || c == '_'))
			return false;
	return true;
}

bool
is_ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

bool
is_ident_char(unsigned char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/* The column slot for name, adding it to columns the first time. */
size_t
slot_for(std::vector<std::string> &columns, std::string name)
{
	for (size_t i = 0; i < columns.size(); i++)
		if (columns[i] == name)
			return i;
	columns.push_back(std::move(name));
	return columns.size() - 1;
}

/*
 * Parses the body of `{...}` starting after the `{` at text[pos]; returns
 * the column name and leaves pos after the closing `}`.
 */
std::string
parse_column(std::string_view arg, std::string_view text, size_t &pos)
{
	std::string name;
	if (pos < text.size() && text[pos] == '"') {
		pos++;
		for (;;) {
			if (pos >= text.size())
				malformed(arg, "unterminated quoted column name");
			if (text[pos] == '"') {
				if (pos + 1 < text.size() && text[pos + 1] == '"') {
					name.push_back('"');
					pos += 2;
					continue;
				}
				pos++;
				break;
			}
			name.push_back(text[pos++]);
		}
		if (name.empty())
			malformed(arg, "empty column name");
	} else {
		size_t start = pos;
		while (pos < text.size() && is_ident_char(static_cast<unsigned char>(text[pos]))) {
			char c = text[pos++];
			name.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c);
		}
		if (pos >= text.size())
			malformed(arg, "unterminated column reference");
		if (name.empty())
			malformed(arg, text[pos] == '}' ? "empty column reference {}"
											: "invalid character in column reference");
		if (!is_ident_start(static_cast<unsigned char>(text[start])))
			malformed(arg, "column reference must start with a letter or underscore (quote other names: {\"1st\"})");
	}
	if (pos >= text.size())
		malformed(arg, "unterminated column reference");
	if (text[pos] != '}')
		malformed(arg, "invalid character in column reference (quote the name: {\"My Column\"})");
	pos++;
	return name;
}

TargetTemplate
parse_template(const std::string &arg, TargetKind kind, bool glob, std::string_view text,
			   std::vector<std::string> &columns)
{
	TargetTemplate tpl;
	tpl.kind = kind;
	tpl.glob = glob;
	tpl.source = arg;
	if (text.empty())
		throw TargetError("empty target " + quoted(arg));

	std::string literal;
	auto flush_literal = [&] {
		if (!literal.empty()) {
			tpl.segments.push_back(TargetTemplate::Segment{false, std::move(literal), 0});
			literal.clear();
		}
	};
	size_t pos = 0;
	while (pos < text.size()) {
		char c = text[pos];
		if (c == '{') {
			if (pos + 1 < text.size() && text[pos + 1] == '{') {
				literal.push_back('{');
				pos += 2;
				continue;
			}
			pos++;
			std::string name = parse_column(arg, text, pos);
			flush_literal();
			tpl.segments.push_back(TargetTemplate::Segment{true, {}, slot_for(columns, std::move(name))});
		} else if (c == '}') {
			if (pos + 1 < text.size() && text[pos + 1] == '}') {
				literal.push_back('}');
				pos += 2;
				continue;
			}
			malformed(arg, "unmatched } (write }} for a literal brace)");
		} else {
			literal.push_back(c);
			pos++;
		}
	}
	flush_literal();
	return tpl;
}

/* Starts t.key with the prefixes its kind lives under; escaped for glob targets. */
void
append_prefixes(Target &t, const KeyPrefixes &prefixes)
{
	t.key.append(t.glob ? glob_escape(prefixes.key_prefix) : std::string(prefixes.key_prefix));
	t.prefix_len = static_cast<uint32_t>(t.key.size());
	if (t.kind == TargetKind::Tag)
		t.key.append(t.glob ? glob_escape(prefixes.tag_prefix) : std::string(prefixes.tag_prefix));
	/* The unescaped length is what a nested member starts with. */
	t.tag_prefix_len = t.kind == TargetKind::Tag
						   ? static_cast<uint32_t>(prefixes.key_prefix.size() + prefixes.tag_prefix.size())
						   : 0;
}

/* The id of `refresh=<id>`: a registration's serial, 1 .. 2^31-1. */
uint32_t
parse_refresh_id(std::string_view arg, std::string_view digits)
{
	bool ok = !digits.empty() && digits.size() <= 10 && digits.find_first_not_of("0123456789") == std::string_view::npos;
	uint64_t id = 0;
	for (size_t i = 0; ok && i < digits.size(); i++)
		id = id * 10 + static_cast<uint64_t>(digits[i] - '0');
	if (!ok || id == 0 || id > INT32_MAX)
		throw TargetError("invalid refresh " + quoted(arg) + " (refresh=<id> names a cachebust._row_refresh registration)");
	return static_cast<uint32_t>(id);
}

/* The columns binding $1..$n: the one key template's, in order, each once. */
std::vector<size_t>
refresh_slots_of(const TriggerSpec &spec)
{
	const TargetTemplate *key = nullptr;
	for (const TargetTemplate &tpl : spec.targets)
		if (spec.refreshes(tpl)) {
			if (key != nullptr)
				throw TargetError("refresh= needs exactly one key template, got " + quoted(key->source) + " and " +
								  quoted(tpl.source) + " (which would bind $1..$n?)");
			key = &tpl;
		}
	if (key == nullptr)
		throw TargetError("refresh= needs a key template (its columns bind $1..$n)");
	std::vector<size_t> slots;
	for (const TargetTemplate::Segment &seg : key->segments)
		if (seg.is_column && std::find(slots.begin(), slots.end(), seg.slot) == slots.end())
			slots.push_back(seg.slot);
	return slots;
}

} // namespace

bool
TargetTemplate::has_columns() const
{
	for (const Segment &s : segments)
		if (s.is_column)
			return true;
	return false;
}

std::optional<Target>
TargetTemplate::render(const KeyPrefixes &prefixes, const RowValues &values, bool immediate) const
{
	for (const Segment &s : segments)
		if (s.is_column && !values.at(s.slot).has_value())
			return std::nullopt;

	Target t;
	t.kind = kind;
	t.glob = glob;
	t.immediate = immediate;
	t.key.reserve(prefixes.key_prefix.size() + prefixes.tag_prefix.size() + 32);
	append_prefixes(t, prefixes);
	for (const Segment &s : segments) {
		if (!s.is_column)
			t.key.append(s.literal);
		else if (glob)
			t.key.append(glob_escape(*values[s.slot]));
		else
			t.key.append(*values[s.slot]);
	}
	check_key_length(t.key);
	return t;
}

Target
TargetTemplate::render_truncate(const KeyPrefixes &prefixes, bool immediate) const
{
	if (!has_columns())
		return *render(prefixes, RowValues(), immediate);

	Target t;
	t.kind = kind;
	t.glob = true;
	t.immediate = immediate;
	append_prefixes(t, prefixes);
	for (const Segment &s : segments) {
		if (s.is_column)
			t.key.push_back('*');
		else if (glob)
			t.key.append(s.literal); /* a pattern's own wildcards stay */
		else
			t.key.append(glob_escape(s.literal));
	}
	check_key_length(t.key);
	return t;
}

TriggerSpec
TriggerSpec::parse(const std::vector<std::string> &args)
{
	TriggerSpec spec;
	bool priority_seen = false;

	for (const std::string &arg : args) {
		std::string_view text(arg);
		TargetKind kind = TargetKind::Key;
		bool glob = false;

		size_t eq = text.find('=');
		if (eq != std::string_view::npos && is_kind_word(text.substr(0, eq))) {
			std::string_view word = text.substr(0, eq);
			std::string_view rest = text.substr(eq + 1);
			if (word == "priority") {
				if (priority_seen)
					throw TargetError("priority given more than once");
				if (rest != "immediate")
					throw TargetError("unknown priority " + quoted(rest) + " in " + quoted(arg) +
									  " (the only priority is immediate)");
				priority_seen = true;
				spec.immediate = true;
				continue;
			}
			if (word == "refresh") {
				if (spec.refresh_id != 0)
					throw TargetError("refresh given more than once");
				spec.refresh_id = parse_refresh_id(arg, rest);
				continue;
			}
			if (word == "key")
				kind = TargetKind::Key;
			else if (word == "tag")
				kind = TargetKind::Tag;
			else if (word == "pattern")
				glob = true;
			else if (word == "bump")
				kind = TargetKind::Bump;
			else
				throw TargetError("unknown target kind " + quoted(word) + " in " + quoted(arg) +
								  " (kinds: key, tag, pattern, bump; write key=" + arg +
								  " for a key containing '=')");
			text = rest;
		}
		spec.targets.push_back(parse_template(arg, kind, glob, text, spec.columns));
	}
	if (spec.targets.empty())
		throw TargetError("no targets given (expected arguments like 'user:{id}' or 'tag=team:{team_id}')");
	if (spec.refresh_id != 0)
		spec.refresh_slots = refresh_slots_of(spec);
	return spec;
}

namespace {

/* Levenshtein distance of a and b. */
size_t
edit_distance(std::string_view a, std::string_view b)
{
	std::vector<size_t> row(b.size() + 1);
	for (size_t j = 0; j <= b.size(); j++)
		row[j] = j;
	for (size_t i = 1; i <= a.size(); i++) {
		size_t diagonal = row[0];
		row[0] = i;
		for (size_t j = 1; j <= b.size(); j++) {
			size_t above = row[j];
			row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
			diagonal = above;
		}
	}
	return row[b.size()];
}

} // namespace

std::string
closest_name(std::string_view name, const std::vector<std::string> &candidates)
{
	std::string best;
	size_t best_distance = SIZE_MAX;
	size_t limit = std::max<size_t>(2, name.size() / 3);
	for (const std::string &c : candidates) {
		size_t d = edit_distance(name, c);
		bool prefix = !name.empty() && c.size() > name.size() && c.compare(0, name.size(), name) == 0;
		if ((d <= limit || prefix) && d < best_distance) {
			best = c;
			best_distance = d;
		}
	}
	return best;
}

Target
make_target(TargetKind kind, bool glob, std::string_view text, const KeyPrefixes &prefixes,
			bool immediate)
{
	if (text.empty())
		throw TargetError("empty target");
	Target t;
	t.kind = kind;
	t.glob = glob;
	t.immediate = immediate;
	append_prefixes(t, prefixes);
	t.key.append(text);
	check_key_length(t.key);
	return t;
}

} // namespace cachebust
