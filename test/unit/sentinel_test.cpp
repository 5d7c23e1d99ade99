/* Tests of finding a Sentinel-monitored master, against real servers. */
#include "core/delivery/sentinel.hpp"

#include <poll.h>

#include <gtest/gtest.h>

#include "core/delivery/engine.hpp"
#include "redis_server.hpp"

using namespace cachebust;
using cachebust::test::free_port;
using cachebust::test::RedisServer;
using cachebust::test::SentinelServer;

namespace {

Endpoint
local(int port)
{
	Endpoint e;
	e.host = "127.0.0.1";
	e.port = port;
	return e;
}

/* Drives the resolver until it has an answer (or 5 s pass). */
bool
resolve(SentinelResolver &r, bool &found, Endpoint &master, std::string &error)
{
	r.request();
	for (int i = 0; i < 500; i++) {
		if (r.take_result(found, master, error))
			return true;
		std::vector<PollEntry> entries;
		r.poll_entries(entries);
		std::vector<pollfd> fds;
		for (const PollEntry &e : entries)
			fds.push_back(pollfd{e.fd, static_cast<short>((e.read ? POLLIN : 0) | (e.write ? POLLOUT : 0)), 0});
		if (poll(fds.data(), fds.size(), 10) > 0)
			for (const pollfd &p : fds)
				if (p.revents != 0)
					r.on_io(p.fd, (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0, (p.revents & POLLOUT) != 0);
		r.on_timer();
	}
	return false;
}

} // namespace

TEST(Sentinel, FindsTheMasterThroughTheFirstSentinelThatAnswers)
{
	RedisServer master;
	SentinelServer sentinel("cache", master.port());
	/* The first sentinel listed is down: the next one is asked. */
	SentinelResolver r({local(free_port()), local(sentinel.port())}, "cache", ConnectionSettings(), 100, 1);
	bool found = false;
	Endpoint where;
	std::string error;
	ASSERT_TRUE(resolve(r, found, where, error));
	EXPECT_TRUE(found) << error;
	EXPECT_EQ(where.port, master.port());
	EXPECT_FALSE(r.busy());
}

TEST(Sentinel, UnknownServiceAndUnreachableSentinelsAreReported)
{
	RedisServer master;
	SentinelServer sentinel("cache", master.port());
	/* Every sentinel unreachable: refused right away, again and again (this recursed into freed memory once). */
	SentinelResolver down({local(free_port()), local(free_port()), local(free_port())}, "cache", ConnectionSettings(),
						  100, 1);
	for (int round = 0; round < 3; round++) {
		bool found = true;
		Endpoint where;
		std::string error;
		ASSERT_TRUE(resolve(down, found, where, error));
		EXPECT_FALSE(found);
		EXPECT_NE(error.find("no sentinel told the master of \"cache\""), std::string::npos) << error;
		EXPECT_NE(error.find("Connection refused"), std::string::npos) << error;
	}

	SentinelResolver unknown({local(sentinel.port())}, "nosuch", ConnectionSettings(), 100, 1);
	bool found = true;
	Endpoint where;
	std::string error;
	ASSERT_TRUE(resolve(unknown, found, where, error));
	EXPECT_FALSE(found);
	EXPECT_NE(error.find("does not know the service \"nosuch\""), std::string::npos) << error;
}
