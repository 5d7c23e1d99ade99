/*
 * clear_tokens.cpp — issuing and redeeming cachebust.clear()'s tokens.
 */
#include "core/clear_tokens.hpp"

#include <cstring>

#include "core/cpp_only.hpp"

namespace cachebust {

bool
clear_token_issue(ClearTokenTable &table, const std::string &token, uint32_t role, uint32_t database,
				  const std::string &pattern, uint64_t count, int64_t now_us)
{
	if (token.empty() || token.size() > kClearTokenChars || pattern.size() > kMaxKeyLength)
		return false;
	/* A free entry, else the one that expired first. */
	ClearToken *slot = nullptr;
	for (ClearToken &e : table.entries) {
		if (e.token[0] == '\0') {
			slot = &e;
			break;
		}
		if (e.expires_us <= now_us && (slot == nullptr || e.expires_us < slot->expires_us))
			slot = &e;
	}
	if (slot == nullptr)
		return false;
	memset(slot->token, 0, sizeof(slot->token));
	memcpy(slot->token, token.data(), token.size());
	slot->role = role;
	slot->database = database;
	slot->expires_us = now_us + kClearTokenLifetimeUs;
	slot->count = count;
	slot->pattern_len = static_cast<uint32_t>(pattern.size());
	memcpy(slot->pattern, pattern.data(), pattern.size());
	return true;
}

ClearRedeem
clear_token_redeem(ClearTokenTable &table, const std::string &token, uint32_t role, uint32_t database,
				   const std::string &pattern, int64_t now_us, uint64_t &count)
{
	if (token.empty() || token.size() > kClearTokenChars)
		return ClearRedeem::Unknown;
	for (ClearToken &e : table.entries) {
		if (e.token[0] == '\0' || strncmp(e.token, token.c_str(), sizeof(e.token)) != 0)
			continue;
		/* Another role's token says nothing about itself, expired or not. */
		if (e.role != role)
			return ClearRedeem::OtherRole;
		if (e.database != database)
			return ClearRedeem::OtherDatabase;
		if (e.expires_us <= now_us) {
			e.token[0] = '\0';
			return ClearRedeem::Expired;
		}
		if (e.pattern_len != pattern.size() || memcmp(e.pattern, pattern.data(), pattern.size()) != 0)
			return ClearRedeem::OtherPattern;
		count = e.count;
		e.token[0] = '\0';
		return ClearRedeem::Ok;
	}
	return ClearRedeem::Unknown;
}

std::string
clear_token_text(const uint8_t random[8])
{
	static const char digits[] = "0123456789abcdef";
	std::string out;
	for (int i = 0; i < 8; i++) {
		out.push_back(digits[random[i] >> 4]);
		out.push_back(digits[random[i] & 0xf]);
	}
	return out;
}

std::string
clear_confirmation(const std::string &token, uint64_t count, ClearCountBound bound, const std::string &full_pattern,
				   const std::string &pattern_literal, int count_budget_s)
{
	std::string out = token + ": ";
	if (bound != ClearCountBound::Exact)
		out += "at least ";
	out += std::to_string(count) + (count == 1 && bound == ClearCountBound::Exact ? " key matches" : " keys match");
	out += " \"" + full_pattern + "\"";
	if (bound == ClearCountBound::Limit)
		out += " (counting stopped there)";
	else if (bound == ClearCountBound::Time)
		out += " (counting stopped after " + std::to_string(count_budget_s) + " s)";
	out += "; confirm within " + std::to_string(kClearTokenLifetimeUs / 1000000) +
		   " s: SELECT cachebust.clear(" + pattern_literal + ", '" + token + "')";
	return out;
}

} // namespace cachebust
