/*
 * publish_message.cpp — the JSON of a published batch.
 */
#include "core/delivery/publish_message.hpp"

#include <cstdio>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* Length of the valid UTF-8 sequence at s[i], or 0 if there is none. */
size_t
utf8_sequence_length(const std::string &s, size_t i)
{
	unsigned char c = static_cast<unsigned char>(s[i]);
	size_t len;
	unsigned int min;
	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0) {
		len = 2;
		min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		len = 3;
		min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		len = 4;
		min = 0x10000;
	} else
		return 0;
	if (i + len > s.size())
		return 0;
	unsigned int cp = c & (0xFF >> (len + 1));
	for (size_t k = 1; k < len; k++) {
		unsigned char cc = static_cast<unsigned char>(s[i + k]);
		if ((cc & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (cc & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

void
append_u00(std::string &out, unsigned char c)
{
	char buf[8];
	snprintf(buf, sizeof(buf), "\\u%04x", c);
	out.append(buf);
}

} // namespace

std::string
json_string(const std::string &bytes)
{
	std::string out;
	out.reserve(bytes.size() + 2);
	out.push_back('"');
	for (size_t i = 0; i < bytes.size();) {
		unsigned char c = static_cast<unsigned char>(bytes[i]);
		if (c == '"' || c == '\\') {
			out.push_back('\\');
			out.push_back(static_cast<char>(c));
			i++;
		} else if (c < 0x20) {
			append_u00(out, c);
			i++;
		} else if (c < 0x80) {
			out.push_back(static_cast<char>(c));
			i++;
		} else {
			size_t len = utf8_sequence_length(bytes, i);
			if (len == 0) {
				append_u00(out, c);
				i++;
			} else {
				out.append(bytes, i, len);
				i += len;
			}
		}
	}
	out.push_back('"');
	return out;
}

std::string
batch_json(const std::vector<Target> &targets)
{
	/* Field order is fixed so consumers and tests can rely on it. */
	static const struct {
		TargetKind kind;
		bool glob;
		const char *field;
	} fields[] = {
		{TargetKind::Key, false, "keys"},		 {TargetKind::Key, true, "patterns"},
		{TargetKind::Tag, false, "tags"},		 {TargetKind::Tag, true, "tag_patterns"},
		{TargetKind::Bump, false, "bumps"},		 {TargetKind::Bump, true, "bump_patterns"},
	};
	std::string out = "{";
	for (const auto &f : fields) {
		bool first = true;
		for (const Target &t : targets) {
			if (t.kind != f.kind || t.glob != f.glob)
				continue;
			if (first) {
				if (out.size() > 1)
					out.push_back(',');
				out += "\"";
				out += f.field;
				out += "\":[";
				first = false;
			} else
				out.push_back(',');
			out += json_string(t.key);
		}
		if (!first)
			out.push_back(']');
	}
	out.push_back('}');
	return out;
}

} // namespace cachebust
