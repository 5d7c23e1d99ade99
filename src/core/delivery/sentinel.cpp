/*
 * sentinel.cpp — the question to the sentinels, and what counts as an answer.
 */
#include "core/delivery/sentinel.hpp"

#include <cstdlib>

#include "core/cpp_only.hpp"

namespace cachebust {

SentinelResolver::SentinelResolver(std::vector<Endpoint> sentinels, std::string service, ConnectionSettings base,
								   int retry_max_ms, uint64_t seed)
	: ask_(std::move(sentinels), std::move(base), {"SENTINEL", "get-master-addr-by-name", service},
		   [this, service](const Reply &r, const Endpoint &, std::string &why) {
			   if (r.type != Reply::Type::Array || r.elements.size() != 2) {
				   why = "does not know the service \"" + service + "\"";
				   return false;
			   }
			   int port = atoi(r.elements[1].str.c_str());
			   if (r.elements[0].str.empty() || port <= 0 || port > 65535) {
				   why = "answered an unusable address";
				   return false;
			   }
			   answer_ = Endpoint();
			   answer_.host = r.elements[0].str;
			   answer_.port = port;
			   return true;
		   },
		   "sentinel", "the master of \"" + service + "\"", retry_max_ms, seed)
{
}

bool
SentinelResolver::take_result(bool &found, Endpoint &master, std::string &error)
{
	if (!ask_.take_result(found, error))
		return false;
	master = answer_;
	return true;
}

} // namespace cachebust
