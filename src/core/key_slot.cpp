/*
 * key_slot.cpp — CRC16/XMODEM and hash tags: the Redis Cluster key slot.
 *
 * The CRC uses a 256-entry table built at compile time from the polynomial,
 * so the table cannot drift from it and costs nothing at run time.
 */
#include "core/key_slot.hpp"

#include <array>

#include "core/cpp_only.hpp"

namespace cachebust {

namespace {

constexpr uint16_t kCrc16Poly = 0x1021;

/* The CRC of each byte value fed into a zero register, MSB first. */
constexpr std::array<uint16_t, 256>
make_crc16_table()
{
	std::array<uint16_t, 256> table{};
	for (int byte = 0; byte < 256; byte++) {
		uint16_t crc = static_cast<uint16_t>(byte << 8);
		for (int bit = 0; bit < 8; bit++)
			crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ kCrc16Poly : crc << 1);
		table[byte] = crc;
	}
	return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = make_crc16_table();

} // namespace

/* One table lookup per byte, most significant bit first, no final xor. */
uint16_t
crc16(std::string_view bytes)
{
	uint16_t crc = 0;
	for (char c : bytes) {
		uint8_t index = static_cast<uint8_t>((crc >> 8) ^ static_cast<uint8_t>(c));
		crc = static_cast<uint16_t>((crc << 8) ^ kCrc16Table[index]);
	}
	return crc;
}

/* The bytes between the first `{` and the next `}`, unless that is empty. */
std::string_view
hash_tag_part(std::string_view key)
{
	size_t open = key.find('{');
	if (open == std::string_view::npos)
		return key;
	size_t close = key.find('}', open + 1);
	/* No closing brace, or an empty tag "{}": the whole key is hashed. */
	if (close == std::string_view::npos || close == open + 1)
		return key;
	return key.substr(open + 1, close - open - 1);
}

/* CRC16 of the hashed part, reduced to a slot. */
uint16_t
key_slot(std::string_view key)
{
	/* kClusterSlots is a power of two: the modulo is a mask. */
	return static_cast<uint16_t>(crc16(hash_tag_part(key)) & (kClusterSlots - 1));
}

} // namespace cachebust
