/*
 * Unit tests: Redis Cluster key slots, checked against known CRC16 vectors
 * and against CLUSTER KEYSLOT of a real redis-server in cluster mode.
 */
#include "core/key_slot.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "redis_client.hpp"
#include "redis_server.hpp"

using namespace cachebust;
using cachebust::test::RedisServer;
using namespace std::string_literals;

TEST(Crc16, KnownVectors)
{
	/* CRC-16/XMODEM check value and a few more from an independent tool. */
	EXPECT_EQ(crc16("123456789"), 0x31C3);
	EXPECT_EQ(crc16(""), 0x0000);
	EXPECT_EQ(crc16("\0"s), 0x0000);
	EXPECT_EQ(crc16("A"), 0x58E5);
	EXPECT_EQ(crc16("\xff\xff\xff\xff"), 0x99CF);
	EXPECT_EQ(crc16("foo"), 0xAF96);
	EXPECT_EQ(crc16("hello world"), 0x3BE4);
}

TEST(KeySlot, KnownSlots)
{
	EXPECT_EQ(key_slot("foo"), 12182);
	EXPECT_EQ(key_slot("bar"), 5061);
	EXPECT_EQ(key_slot("123456789"), 12739);
	EXPECT_EQ(key_slot(""), 0);
	EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
	EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
}

TEST(KeySlot, HashTagPart)
{
	EXPECT_EQ(hash_tag_part("plain"), "plain");
	EXPECT_EQ(hash_tag_part("a{b}c"), "b");
	EXPECT_EQ(hash_tag_part("{a}{b}"), "a");
	EXPECT_EQ(hash_tag_part("{{a}}"), "{a");
	EXPECT_EQ(hash_tag_part("}{a}"), "a");
	/* An empty tag disables tagging: a later tag is not looked for. */
	EXPECT_EQ(hash_tag_part("{}"), "{}");
	EXPECT_EQ(hash_tag_part("{}{a}"), "{}{a}");
	EXPECT_EQ(hash_tag_part("{a"), "{a");
	EXPECT_EQ(hash_tag_part("a}"), "a}");
	EXPECT_EQ(hash_tag_part("{"), "{");
	EXPECT_EQ(hash_tag_part("}"), "}");
	EXPECT_EQ(hash_tag_part(""), "");
	EXPECT_EQ(hash_tag_part("x{\0}y"s), "\0"s);
	EXPECT_EQ(hash_tag_part("\0{a\0b}"s), "a\0b"s);
}

/* A cluster-mode redis-server shared by the tests that ask it for slots. */
class KeySlotServerTest : public ::testing::Test
{
  protected:
	static std::string config_path;
	static RedisServer *server;

	static void SetUpTestSuite()
	{
		config_path = "/tmp/cachebust-key-slot-test-" + std::to_string(getpid()) + ".conf";
		/*
		 * The cluster bus listens on port + 10000 unless told otherwise, so
		 * a kernel-chosen port above 55535 makes redis-server refuse to
		 * start; give the bus a free port of its own. The two free ports are
		 * picked independently and could collide: then try again.
		 */
		for (int attempt = 0; server == nullptr; attempt++) {
			std::remove(config_path.c_str());
			try {
				server = new RedisServer({"--cluster-enabled", "yes", "--cluster-config-file", config_path,
										  "--cluster-port", std::to_string(cachebust::test::free_port())});
			} catch (const std::runtime_error &) {
				if (attempt >= 4)
					throw;
			}
		}
	}

	static void TearDownTestSuite()
	{
		delete server;
		server = nullptr;
		std::remove(config_path.c_str());
	}

	/* Compares key_slot with CLUSTER KEYSLOT for every key, in one round trip. */
	static void expect_same_slots(const std::vector<std::string> &keys)
	{
		RedisClient c;
		c.connect(server->url(), RedisTimeouts{1000, 10000});
		std::vector<Command> commands;
		commands.reserve(keys.size());
		for (const std::string &key : keys)
			commands.push_back({"CLUSTER", "KEYSLOT", key});
		std::vector<Reply> replies = c.pipeline(commands);
		ASSERT_EQ(replies.size(), keys.size());
		for (size_t i = 0; i < keys.size(); i++) {
			ASSERT_EQ(replies[i].type, Reply::Type::Integer) << replies[i].str;
			EXPECT_EQ(key_slot(keys[i]), replies[i].integer)
				<< "key #" << i << " of length " << keys[i].size() << ": "
				<< ::testing::PrintToString(keys[i]);
		}
	}
};

std::string KeySlotServerTest::config_path;
RedisServer *KeySlotServerTest::server = nullptr;

TEST_F(KeySlotServerTest, HashTagEdgeCasesMatchRedis)
{
	std::vector<std::string> keys = {
		"",
		"foo",
		"123456789",
		"{}",
		"{}{a}",
		"{a}{b}",
		"a{b}c",
		"{{a}}",
		"{{}}",
		"}{a}",
		"}{}",
		"{a",
		"a}",
		"{",
		"}",
		"{}}",
		"{{",
		"}}",
		"}{",
		"{a}",
		"a",
		"{}a{b}",
		"x{}y{z}",
		"{user1000}.following",
		"{user1000}.followers",
		"user1000",
		"{\0}"s,
		"\0"s,
		"\0\0\0"s,
		"a{\0b}c"s,
		"\0{x}\0"s,
		"{\0"s,
		"\0}"s,
		"{}\0{x}"s,
		"\x80",
		"\xff",
		"{\xff}",
		"caf\xc3\xa9:{\xe2\x82\xac}",
		"\xfe{\x80\x81}\xff",
		std::string(10000, 'k'),
		"{" + std::string(5000, 't') + "}" + std::string(5000, 'x'),
		std::string(5000, 'x') + "{tag}" + std::string(5000, 'y'),
		std::string(4096, '{'),
		std::string(4096, '}'),
		std::string(3000, '{') + "}" + std::string(3000, '}'),
	};
	std::string all_bytes;
	for (int b = 0; b < 256; b++)
		all_bytes.push_back(static_cast<char>(b));
	keys.push_back(all_bytes);
	for (int b = 0; b < 256; b++) {
		keys.push_back(std::string(1, static_cast<char>(b)));
		keys.push_back("{" + std::string(1, static_cast<char>(b)) + "}x");
	}
	expect_same_slots(keys);
}

TEST_F(KeySlotServerTest, RandomKeysMatchRedis)
{
	/* Brace-heavy keys; raw mt19937 output is the same on every platform. */
	static const std::string alphabet("{{{}}}ab\0\x80\xff:"s);
	std::mt19937 rng(20240601);
	std::vector<std::string> keys;
	for (int i = 0; i < 5000; i++) {
		size_t len = rng() % (i < 4000 ? 16 : 300);
		std::string key;
		for (size_t j = 0; j < len; j++)
			key.push_back(alphabet[rng() % alphabet.size()]);
		keys.push_back(key);
	}
	expect_same_slots(keys);
}
