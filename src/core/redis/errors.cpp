/*
 * errors.cpp — reply classification.
 */
#include "core/redis/errors.hpp"

#include <cstdlib>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

/* "MOVED 3999 127.0.0.1:6381" → slot and endpoint; false if malformed.
 * "MOVED 3999 :6381" (cluster-preferred-endpoint-type unknown-endpoint)
 * names no host: the one the connection that got it talks to. */
bool
parse_redirect(const std::string &text, Classified &out)
{
	size_t sp1 = text.find(' ');
	size_t sp2 = sp1 == std::string::npos ? std::string::npos : text.find(' ', sp1 + 1);
	if (sp2 == std::string::npos)
		return false;
	std::string slot = text.substr(sp1 + 1, sp2 - sp1 - 1);
	std::string addr = text.substr(sp2 + 1);
	size_t colon = addr.rfind(':');
	if (slot.empty() || colon == std::string::npos)
		return false;
	char *end = nullptr;
	long s = strtol(slot.c_str(), &end, 10);
	long port = strtol(addr.c_str() + colon + 1, nullptr, 10);
	if (*end != '\0' || s < 0 || s >= 16384 || port <= 0 || port > 65535)
		return false;
	out.slot = static_cast<int>(s);
	std::string host = addr.substr(0, colon);
	if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
		host = host.substr(1, host.size() - 2);
	out.target.host = host;
	out.target.port = static_cast<int>(port);
	out.same_host = host.empty();
	return true;
}

} // namespace

std::string
error_code(const Reply &reply)
{
	if (reply.type != Reply::Type::Error)
		return std::string();
	return reply.str.substr(0, reply.str.find(' '));
}

Classified
classify_reply(const Reply &reply)
{
	Classified c;
	if (reply.type == Reply::Type::Failed) {
		c.kind = ReplyClass::Transient;
		c.reconnect = true;
		return c;
	}
	if (reply.type != Reply::Type::Error)
		return c;

	std::string code = error_code(reply);
	if (code == "MOVED" || code == "ASK") {
		if (parse_redirect(reply.str, c)) {
			c.kind = code == "MOVED" ? ReplyClass::Moved : ReplyClass::Ask;
			return c;
		}
		c.kind = ReplyClass::Transient;
		c.reconnect = true;
		return c;
	}
	if (code == "NOSCRIPT") {
		c.kind = ReplyClass::NoScript;
		return c;
	}
	/* The server cannot take writes now, or we are talking to the wrong one. */
	if (code == "READONLY" || code == "REDIRECT" || code == "NOAUTH" || code == "MASTERDOWN") {
		c.kind = ReplyClass::Transient;
		c.reconnect = true;
		return c;
	}
	static const char *const transient[] = {"LOADING", "BUSY", "OOM", "TRYAGAIN", "CLUSTERDOWN",
											"MISCONF", "NOREPLICAS", "UNBLOCKED"};
	for (const char *t : transient)
		if (code == t) {
			c.kind = ReplyClass::Transient;
			return c;
		}
	/* WRONGTYPE, NOPERM, ERR (not an integer, syntax, unknown command), EXECABORT, ... */
	c.kind = ReplyClass::Permanent;
	return c;
}

} // namespace cachebust
