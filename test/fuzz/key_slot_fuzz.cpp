/*
 * key_slot_fuzz.cpp — libFuzzer target for the Redis Cluster key slot.
 *
 * The input is one binary key. The table-driven crc16 must agree with a
 * bit-at-a-time CRC16/XMODEM written here, and hash_tag_part with a plain
 * index-by-index reading of the hash tag rule; the tag must be a view into
 * the key itself and the slot must be below kClusterSlots. Any mismatch,
 * crash or sanitizer report is a bug.
 */
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/key_slot.hpp"

using namespace cachebust;

/* CRC16/XMODEM one bit at a time: poly 0x1021, init 0, no reflection. */
static uint16_t
reference_crc16(const uint8_t *data, size_t size)
{
	uint32_t crc = 0;
	for (size_t i = 0; i < size; i++) {
		for (int bit = 7; bit >= 0; bit--) {
			uint32_t in = (data[i] >> bit) & 1;
			uint32_t top = (crc >> 15) & 1;
			crc = (crc << 1) & 0xFFFF;
			if (top ^ in)
				crc ^= 0x1021;
		}
	}
	return static_cast<uint16_t>(crc);
}

/* Start and length of the hashed bytes, straight from the rule's wording. */
static void
reference_tag(const uint8_t *data, size_t size, size_t *start, size_t *len)
{
	*start = 0;
	*len = size;
	size_t open = 0;
	while (open < size && data[open] != '{')
		open++;
	if (open == size)
		return;
	size_t close = open + 1;
	while (close < size && data[close] != '}')
		close++;
	if (close == size || close - open < 2)
		return;
	*start = open + 1;
	*len = close - open - 1;
}

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view key(reinterpret_cast<const char *>(data), size);

	if (crc16(key) != reference_crc16(data, size))
		__builtin_trap();

	size_t start, len;
	reference_tag(data, size, &start, &len);
	std::string_view tag = hash_tag_part(key);
	if (tag.size() != len || (len > 0 && tag.data() != key.data() + start))
		__builtin_trap();

	uint16_t slot = key_slot(key);
	if (slot >= kClusterSlots ||
		slot != reference_crc16(data + start, len) % kClusterSlots)
		__builtin_trap();
	return 0;
}
