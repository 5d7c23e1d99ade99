/* Tests of the failover memory: what a failover repeats (issue 21, item 7). */
#include "core/delivery/failover_memory.hpp"

#include <algorithm>

#include <gtest/gtest.h>

using namespace cachebust;

namespace {

constexpr int64_t kMs = 1000;
constexpr int64_t kS = 1000 * kMs;

Endpoint
node(int port)
{
	Endpoint e;
	e.host = "127.0.0.1";
	e.port = port;
	return e;
}

Target
key(const std::string &k, uint32_t prefix_len = 0)
{
	Target t;
	t.key = k;
	t.prefix_len = prefix_len;
	return t;
}

std::vector<std::string>
keys(const FailoverMemory::Repeat &r)
{
	std::vector<std::string> out;
	for (const Target &t : r.targets)
		out.push_back(t.key);
	std::sort(out.begin(), out.end());
	return out;
}

} // namespace

/* Sentinel's default detection: the master dies, the failover is noticed 30 s later. */
TEST(FailoverMemory, TheWindowEndsAtTheLastHealthyContact)
{
	FailoverMemory m;
	m.configure(10 * kS, 1000);
	int64_t t = 100 * kS;
	m.applied(node(1), t - 15 * kS, {key("too-old")});
	m.applied(node(1), t - 2 * kS, {key("a")});
	m.applied(node(1), t, {key("b")}); /* the last reply before the master died */
	/* 30 s of silence: nothing is pruned by the passing of time alone. */
	FailoverMemory::Repeat r = m.take_repeat();
	EXPECT_EQ(keys(r), (std::vector<std::string>{"a", "b"}))
		<< "acknowledged within 10 s before the last contact, not before the detection";
	EXPECT_TRUE(r.prefixes.empty());
	EXPECT_EQ(m.targets(), 0u) << "the memory starts over";
	EXPECT_TRUE(m.take_repeat().targets.empty());
}

TEST(FailoverMemory, ContactWithoutAcknowledgementsMovesTheWindow)
{
	FailoverMemory m;
	m.configure(10 * kS, 1000);
	m.applied(node(1), 0, {key("early")});
	m.contact(node(1), 5 * kS);
	EXPECT_EQ(m.targets(), 1u);
	m.contact(node(1), 11 * kS); /* e.g. a SCAN reply: the node was healthy then */
	EXPECT_EQ(m.targets(), 0u) << "more than a window before the last contact: never repeated";
	m.contact(node(1), 3 * kS); /* (an older time never moves it back) */
	EXPECT_TRUE(m.take_repeat().targets.empty());
}

/* Each node's window ends at its own last contact: a silent node's last
 * acknowledgements stay while a busy node's old ones go. */
TEST(FailoverMemory, EachNodeHasItsOwnWindow)
{
	FailoverMemory m;
	m.configure(1 * kS, 1000);
	m.applied(node(1), 0, {key("silent-last")});
	for (int i = 1; i <= 5; i++)
		m.applied(node(2), i * kS, {key("busy" + std::to_string(i))});
	FailoverMemory::Repeat r = m.take_repeat();
	EXPECT_EQ(keys(r), (std::vector<std::string>{"busy4", "busy5", "silent-last"}));
}

/* Bounded by max_targets: the oldest is forgotten, its prefix goes to the fallback. */
TEST(FailoverMemory, TheBoundForgetsTheOldestAndKeepsItsPrefix)
{
	FailoverMemory m;
	m.configure(10 * kS, 3);
	m.applied(node(1), 1 * kS, {key("app:1", 4), key("app:2", 4)});
	m.applied(node(2), 2 * kS, {key("b:1", 2)});
	m.applied(node(1), 3 * kS, {key("c:1", 2)});
	EXPECT_EQ(m.targets(), 2u);
	FailoverMemory::Repeat r = m.take_repeat();
	EXPECT_EQ(keys(r), (std::vector<std::string>{"b:1", "c:1"}));
	EXPECT_EQ(r.prefixes, (std::vector<std::string>{"app:"}));

	/* A forgotten prefix older than its node's window is not needed any more. */
	m.configure(10 * kS, 1);
	m.applied(node(1), 1 * kS, {key("app:1", 4)});
	m.applied(node(1), 2 * kS, {key("b:1", 2)}); /* forgets app:1 */
	m.applied(node(1), 30 * kS, {key("c:1", 2)}); /* b:1 and the prefix app: are out of the window */
	r = m.take_repeat();
	EXPECT_EQ(keys(r), (std::vector<std::string>{"c:1"}));
	EXPECT_EQ(r.prefixes, (std::vector<std::string>{}));
}

TEST(FailoverMemory, AWindowOfZeroRemembersNothing)
{
	FailoverMemory m;
	m.configure(0, 1000);
	m.applied(node(1), 1 * kS, {key("k")});
	EXPECT_EQ(m.targets(), 0u);
	EXPECT_TRUE(m.take_repeat().targets.empty());
}
