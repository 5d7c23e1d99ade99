/* Tests of the cluster slot map. */
#include "core/delivery/cluster_map.hpp"

#include <gtest/gtest.h>

using namespace cachebust;

namespace {

Reply
integer(long long v)
{
	Reply r;
	r.type = Reply::Type::Integer;
	r.integer = v;
	return r;
}

Reply
string(const std::string &s)
{
	Reply r;
	r.type = Reply::Type::String;
	r.str = s;
	return r;
}

Reply
array(std::vector<Reply> elements)
{
	Reply r;
	r.type = Reply::Type::Array;
	r.elements = std::move(elements);
	return r;
}

Reply
range(int start, int end, const std::string &host, int port)
{
	return array({integer(start), integer(end), array({string(host), integer(port), string("id")}),
				  array({string("127.0.0.9"), integer(9999), string("replica")})});
}

} // namespace

TEST(ClusterMap, ReadsClusterSlots)
{
	ClusterMap map;
	Endpoint asked;
	asked.host = "10.0.0.5";
	asked.port = 7000;
	std::string why;
	ASSERT_TRUE(map.load(array({range(0, 5460, "127.0.0.1", 7000), range(5461, 10922, "127.0.0.1", 7001),
								 range(10923, 16383, "", 7002)}),
						 asked, why))
		<< why;
	EXPECT_TRUE(map.complete());
	ASSERT_EQ(map.masters().size(), 3u) << "replicas are not masters";
	EXPECT_EQ(map.master_for_slot(0)->port, 7000);
	EXPECT_EQ(map.master_for_slot(5461)->port, 7001);
	EXPECT_EQ(map.master_for_slot(16383)->host, "10.0.0.5") << "an empty host is the node asked";
	EXPECT_EQ(map.master_for_slot(key_slot("{foo}.following"))->port, 7002) << "slot 12182, by the hash tag";

	Endpoint moved;
	moved.host = "127.0.0.1";
	moved.port = 7001;
	map.move_slot(3, moved);
	EXPECT_EQ(map.master_for_slot(3)->port, 7001);
	EXPECT_EQ(map.master_for_slot(2)->port, 7000);
}

TEST(ClusterMap, RefusesWhatIsNotASlotMap)
{
	ClusterMap map;
	std::string why;
	EXPECT_FALSE(map.load(array({}), Endpoint(), why));
	EXPECT_FALSE(map.load(array({array({integer(0)})}), Endpoint(), why));
	EXPECT_FALSE(map.load(array({range(5, 20000, "h", 1)}), Endpoint(), why));
	EXPECT_TRUE(map.empty()) << "unchanged after a refusal";
	ASSERT_TRUE(map.load(array({range(0, 100, "h", 1)}), Endpoint(), why));
	EXPECT_FALSE(map.complete());
	EXPECT_EQ(map.master_for_slot(101), nullptr);
}
