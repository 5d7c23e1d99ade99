/*
 * template_fuzz.cpp — libFuzzer target for the trigger argument grammar.
 *
 * The input is split at NUL bytes into trigger arguments. Parsing may only
 * fail with TargetError; a parsed spec is rendered with assorted row values
 * (NULLs, glob characters, odd bytes) and in its TRUNCATE form, where again
 * only TargetError (an oversize key) is an acceptable failure. Any other
 * exception, crash or sanitizer report is a bug.
 */
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/template.hpp"

using namespace cachebust;

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::vector<std::string> args(1);
	for (size_t i = 0; i < size; i++) {
		if (data[i] == 0)
			args.emplace_back();
		else
			args.back().push_back(static_cast<char>(data[i]));
	}

	TriggerSpec spec;
	try {
		spec = TriggerSpec::parse(args);
	} catch (const TargetError &) {
		return 0;
	}

	static const std::string odd("*?[]\\\r\n\"' \xff", 11);
	KeyPrefixes prefixes{"app*:", "tag:"};
	std::vector<RowValues> rows = {
		RowValues(spec.columns.size(), std::string_view("1")),
		RowValues(spec.columns.size(), std::string_view(odd)),
		RowValues(spec.columns.size(), std::string_view("")),
		RowValues(spec.columns.size(), std::nullopt),
	};
	for (const TargetTemplate &tpl : spec.targets) {
		for (const RowValues &row : rows) {
			try {
				std::optional<Target> t = tpl.render(prefixes, row, spec.immediate);
				if (t && (t->key.empty() || t->key.size() > kMaxKeyLength))
					__builtin_trap();
			} catch (const TargetError &) {
			}
		}
		try {
			Target t = tpl.render_truncate(prefixes, spec.immediate);
			if (!t.glob && tpl.has_columns())
				__builtin_trap();
		} catch (const TargetError &) {
		}
	}
	return 0;
}
