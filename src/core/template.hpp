/*
 * template.hpp — the trigger argument grammar: parsing once, rendering per row.
 *
 * Each trigger argument is `[kind=]template` (kind: key, tag, pattern, bump)
 * or an option: `priority=immediate`, or `refresh=<id>` (watch(..., refresh
 * => ...): the one key template is refreshed by registration <id> instead
 * of removed, core/row_refresh.hpp). In a template, `{column}` is replaced
 * by the column's text form, `{"Quoted Name"}` names a column verbatim
 * (`""` inside quotes is one quote), unquoted names are folded to lower case
 * like SQL identifiers, and `{{` / `}}` are literal braces.
 *
 * A TriggerSpec is compiled once per trigger and cached by the glue; rendering
 * needs only the row's column values, looked up by slot.
 */
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/target.hpp"

namespace cachebust {

/* Where rendered keys live: key_prefix, and tag_prefix under it for tags. */
struct KeyPrefixes {
	std::string_view key_prefix;
	std::string_view tag_prefix;
};

/* One row's values for the spec's column slots; nullopt is SQL NULL. */
using RowValues = std::vector<std::optional<std::string_view>>;

class TargetTemplate
{
  public:
	struct Segment {
		bool is_column;
		std::string literal; /* when !is_column */
		size_t slot;		 /* when is_column: index into TriggerSpec::columns */
	};

	TargetKind kind = TargetKind::Key;
	bool glob = false;	  /* written as pattern=... */
	std::string source;	  /* the argument as the user wrote it */
	std::vector<Segment> segments;

	bool has_columns() const;

	/*
	 * The target for one row, or nullopt when a referenced column is NULL.
	 * Column values in glob targets are glob-escaped, so only the template's
	 * own wildcards match more than one key. Throws TargetError for an empty
	 * or oversize key.
	 */
	std::optional<Target> render(const KeyPrefixes &prefixes, const RowValues &values,
								 bool immediate) const;

	/*
	 * The target a TRUNCATE produces: the template as it is when it has no
	 * columns; otherwise a glob where each column is `*` and the template's
	 * literal glob characters are escaped (key → pattern, tag → tag_pattern,
	 * bump → bump_pattern; a pattern keeps its own wildcards).
	 */
	Target render_truncate(const KeyPrefixes &prefixes, bool immediate) const;
};

class TriggerSpec
{
  public:
	std::vector<TargetTemplate> targets;
	std::vector<std::string> columns; /* distinct column names, by slot */
	bool immediate = false;			  /* priority=immediate was given */
	/* refresh=<id> (0: none): the key template's targets become row
	 * refreshes bound to its columns, refresh_slots, in template order. */
	uint32_t refresh_id = 0;
	std::vector<size_t> refresh_slots;

	/* Whether tpl's targets are row refreshes (the one key template with refresh=). */
	bool refreshes(const TargetTemplate &tpl) const
	{
		return refresh_id != 0 && tpl.kind == TargetKind::Key && !tpl.glob;
	}

	/*
	 * Parses trigger arguments. Throws TargetError whose message names the
	 * offending argument, e.g. `unknown target kind "tga" in "tga=x:{id}"`.
	 * At least one target is required.
	 */
	static TriggerSpec parse(const std::vector<std::string> &args);
};

/*
 * The candidate closest to a misspelt name, for a hint ("team" → "team_id",
 * "emial" → "email"), or "" when none is close enough: an edit distance of
 * at most max(2, len/3), or a candidate that starts with the name.
 */
std::string closest_name(std::string_view name, const std::vector<std::string> &candidates);

/*
 * Builds a target from the manual SQL functions: `text` is used verbatim
 * (for glob targets it is a pattern whose wildcards are the caller's),
 * with the prefixes applied (glob-escaped for glob targets).
 */
Target make_target(TargetKind kind, bool glob, std::string_view text,
				   const KeyPrefixes &prefixes, bool immediate);

} // namespace cachebust
