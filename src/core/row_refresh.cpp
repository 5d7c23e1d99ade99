/*
 * row_refresh.cpp — see row_refresh.hpp.
 */
#include "core/row_refresh.hpp"

#include "core/cpp_only.hpp"

namespace cachebust {

std::string
row_refresh_key(std::string_view redis_key, uint32_t id, const std::vector<std::string_view> &params)
{
	std::string id_text = std::to_string(id);
	size_t size = redis_key.size() + 1 + id_text.size();
	for (std::string_view p : params)
		size += 1 + p.size();
	std::string key;
	key.reserve(size);
	key.append(redis_key);
	key.push_back('\0');
	key.append(id_text);
	for (std::string_view p : params) {
		key.push_back('\0');
		key.append(p);
	}
	return key;
}

bool
parse_row_refresh_key(std::string_view key, std::string &redis_key, uint32_t &id, std::vector<std::string> &params)
{
	size_t end = key.find('\0');
	if (end == std::string_view::npos || end == 0)
		return false;
	size_t id_start = end + 1;
	size_t id_end = key.find('\0', id_start);
	std::string_view id_text = key.substr(id_start, id_end == std::string_view::npos ? std::string_view::npos
																					   : id_end - id_start);
	if (id_text.empty() || id_text.size() > 10)
		return false;
	uint64_t n = 0;
	for (char c : id_text) {
		if (c < '0' || c > '9')
			return false;
		n = n * 10 + static_cast<uint64_t>(c - '0');
	}
	if (n == 0 || n > UINT32_MAX)
		return false;
	redis_key.assign(key.substr(0, end));
	id = static_cast<uint32_t>(n);
	params.clear();
	for (size_t pos = id_end; pos != std::string_view::npos;) {
		size_t next = key.find('\0', pos + 1);
		params.emplace_back(key.substr(pos + 1, next == std::string_view::npos ? std::string_view::npos
																				 : next - pos - 1));
		pos = next;
	}
	return true;
}

std::string_view
redis_key_of(const Target &t)
{
	std::string_view key(t.key);
	if (t.kind != TargetKind::Refresh)
		return key;
	return key.substr(0, key.find('\0'));
}

void
make_row_refresh(Target &t, uint32_t id, uint32_t database, const std::vector<size_t> &slots,
				 const std::vector<std::optional<std::string_view>> &values, size_t max_len)
{
	std::vector<std::string_view> params;
	params.reserve(slots.size());
	for (size_t slot : slots)
		params.push_back(*values.at(slot));
	std::string key = row_refresh_key(t.key, id, params);
	if (key.size() > max_len)
		return;
	t.kind = TargetKind::Refresh;
	t.database = database;
	t.key = std::move(key);
}

} // namespace cachebust
