/*
 * target.cpp — target names, glob escaping and the key length bound.
 */
#include "core/target.hpp"

#include <algorithm>

#include "core/cpp_only.hpp"

namespace cachebust {

const char *
target_kind_name(TargetKind kind, bool glob)
{
	switch (kind) {
	case TargetKind::Key:
		return glob ? "pattern" : "key";
	case TargetKind::Tag:
		return glob ? "tag_pattern" : "tag";
	case TargetKind::Bump:
		return glob ? "bump_pattern" : "bump";
	case TargetKind::Refresh:
		return "refresh";
	case TargetKind::Set:
		return "set";
	}
	return "unknown";
}

std::string
glob_escape(std::string_view text)
{
	std::string out;
	out.reserve(text.size() + 4);
	for (char c : text) {
		if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\')
			out.push_back('\\');
		out.push_back(c);
	}
	return out;
}

std::string
target_prefix(const Target &t)
{
	std::string_view prefix(t.key.data(), std::min<size_t>(t.prefix_len, t.key.size()));
	if (!t.glob)
		return std::string(prefix);
	std::string out;
	for (size_t i = 0; i < prefix.size(); i++) {
		if (prefix[i] == '\\' && i + 1 < prefix.size())
			i++;
		out.push_back(prefix[i]);
	}
	return out;
}

void
check_key_length(const std::string &key)
{
	if (key.empty())
		throw TargetError("rendered key is empty");
	if (key.size() > kMaxKeyLength)
		throw TargetError("rendered key is " + std::to_string(key.size()) +
						  " bytes, more than the limit of " + std::to_string(kMaxKeyLength));
}

} // namespace cachebust
