/*
 * deliverer.cpp — executing targets against Redis.
 */
#include "core/deliverer.hpp"

#include <algorithm>
#include <cstdio>

#include "core/cpp_only.hpp"

namespace cachebust {

const char *const kTagScript = R"lua(
local prefix = ARGV[1]
local max_depth = tonumber(ARGV[2])
local seen = {}
local function unlink_all(keys)
  for i = 1, #keys, 500 do
    redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
  end
end
local function is_nested_set(member)
  return string.sub(member, 1, #prefix) == prefix and redis.call('TYPE', member)['ok'] == 'set'
end
local function expand(set, depth)
  if seen[set] then return end
  seen[set] = true
  local kind = redis.call('TYPE', set)['ok']
  if kind == 'none' then return end
  if kind == 'set' then
    local plain = {}
    for _, member in ipairs(redis.call('SMEMBERS', set)) do
      if is_nested_set(member) then
        if depth < max_depth then expand(member, depth + 1) end
      else
        plain[#plain + 1] = member
      end
    end
    unlink_all(plain)
  end
  redis.call('UNLINK', set)
end
expand(KEYS[1], 0)
return 1
)lua";

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

std::vector<Command>
unlink_commands(const std::vector<std::string> &keys, size_t chunk)
{
	std::vector<Command> commands;
	if (chunk == 0)
		chunk = 1;
	for (size_t i = 0; i < keys.size(); i += chunk) {
		Command cmd;
		size_t end = std::min(keys.size(), i + chunk);
		cmd.reserve(end - i + 1);
		cmd.push_back("UNLINK");
		cmd.insert(cmd.end(), keys.begin() + i, keys.begin() + end);
		commands.push_back(std::move(cmd));
	}
	return commands;
}

std::vector<Reply>
Deliverer::run(const std::vector<Command> &commands, DeliveryCounters &counters)
{
	if (commands.empty())
		return {};
	counters.commands += commands.size();
	return client_.pipeline(commands);
}

void
Deliverer::ensure_script(DeliveryCounters &counters)
{
	if (!script_sha_.empty())
		return;
	Reply r = run({{"SCRIPT", "LOAD", kTagScript}}, counters).front();
	if (r.type != Reply::Type::String)
		throw RedisError("SCRIPT LOAD of the tag script failed: " + r.str);
	script_sha_ = r.str;
}

Command
Deliverer::tag_command(const std::string &key, uint32_t prefix_len, int depth) const
{
	return {"EVALSHA", script_sha_, "1", key, key.substr(0, prefix_len), std::to_string(depth)};
}

/* Throws on the first error reply, after counting them all. */
void
Deliverer::check(const std::vector<Reply> &replies, const std::vector<Command> &commands,
				 DeliveryCounters &counters)
{
	const Reply *first = nullptr;
	size_t first_index = 0;
	for (size_t i = 0; i < replies.size(); i++) {
		if (replies[i].is_error()) {
			counters.error_replies++;
			if (first == nullptr) {
				first = &replies[i];
				first_index = i;
			}
		}
	}
	if (first != nullptr)
		throw RedisError("Redis refused " + commands[first_index][0] + ": " + first->str);
}

void
Deliverer::deliver_glob(const Target &target, const DeliveryOptions &options,
						DeliveryCounters &counters)
{
	std::string cursor = "0";
	do {
		Command scan = {"SCAN", cursor, "MATCH", target.key, "COUNT", std::to_string(options.scan_count)};
		if (target.kind == TargetKind::Tag) {
			scan.push_back("TYPE");
			scan.push_back("set");
		}
		Reply r = run({scan}, counters).front();
		if (r.is_error())
			throw RedisError("Redis refused SCAN: " + r.str);
		if (r.type != Reply::Type::Array || r.elements.size() != 2)
			throw RedisError("unexpected SCAN reply");
		cursor = r.elements[0].str;

		std::vector<std::string> keys;
		for (const Reply &k : r.elements[1].elements)
			keys.push_back(k.str);
		if (keys.empty())
			continue;

		std::vector<Command> commands;
		if (target.kind == TargetKind::Key)
			commands = unlink_commands(keys, options.unlink_chunk);
		else if (target.kind == TargetKind::Bump)
			for (const std::string &k : keys)
				commands.push_back({"INCR", k});
		else {
			ensure_script(counters);
			for (const std::string &k : keys)
				commands.push_back(tag_command(k, target.tag_prefix_len, options.tag_depth));
		}
		check(run(commands, counters), commands, counters);
	} while (cursor != "0");
}

void
Deliverer::deliver(const std::vector<Target> &targets, const DeliveryOptions &options,
				   DeliveryCounters &counters)
{
	std::vector<std::string> keys;
	std::vector<Command> commands;
	bool have_tags = false;
	for (const Target &t : targets)
		if (t.kind == TargetKind::Tag)
			have_tags = true;
	if (have_tags)
		ensure_script(counters);

	for (const Target &t : targets) {
		if (t.glob)
			continue;
		if (t.kind == TargetKind::Key)
			keys.push_back(t.key);
		else if (t.kind == TargetKind::Tag)
			commands.push_back(tag_command(t.key, t.tag_prefix_len, options.tag_depth));
		else
			commands.push_back({"INCR", t.key});
	}
	for (Command &cmd : unlink_commands(keys, options.unlink_chunk))
		commands.push_back(std::move(cmd));

	std::vector<Reply> replies = run(commands, counters);

	/* The script cache can be flushed under us (SCRIPT FLUSH, a restart with
	 * the same connection impossible, a failover): reload and resend once. */
	std::vector<Command> again;
	for (size_t i = 0; i < replies.size(); i++)
		if (replies[i].is_error() && replies[i].str.rfind("NOSCRIPT", 0) == 0) {
			again.push_back(commands[i]);
			replies[i] = Reply();
		}
	check(replies, commands, counters);
	if (!again.empty()) {
		script_sha_.clear();
		ensure_script(counters);
		for (Command &cmd : again)
			cmd[1] = script_sha_;
		check(run(again, counters), again, counters);
	}

	for (const Target &t : targets)
		if (t.glob)
			deliver_glob(t, options, counters);

	if (!options.publish_channel.empty()) {
		Command publish = {"PUBLISH", options.publish_channel, batch_json(targets)};
		check(run({publish}, counters), {publish}, counters);
	}
}

void
Deliverer::fallback_prefix(const std::string &key_prefix, const DeliveryOptions &options,
						   DeliveryCounters &counters)
{
	if (key_prefix.empty())
		throw std::invalid_argument("the prefix fallback needs a non-empty key_prefix");
	Target all;
	all.kind = TargetKind::Key;
	all.glob = true;
	all.key = glob_escape(key_prefix) + "*";
	deliver_glob(all, options, counters);
}

void
Deliverer::fallback_generation(const std::string &key_prefix, DeliveryCounters &counters)
{
	Command incr = {"INCR", key_prefix + "cachebust:generation"};
	check(run({incr}, counters), {incr}, counters);
}

void
Deliverer::fallback_flushdb(DeliveryCounters &counters)
{
	Command flush = {"FLUSHDB", "ASYNC"};
	check(run({flush}, counters), {flush}, counters);
}

} // namespace cachebust
