/*
 * key_slot.hpp — the Redis Cluster hash slot of a key.
 *
 * Redis Cluster places a key in one of 16384 slots: CRC16 (XMODEM, the
 * CCITT polynomial 0x1021 with initial value 0) of the key, modulo 16384.
 * A hash tag narrows what is hashed: when the key has a `{` and, after it,
 * a `}` with at least one byte in between, only the bytes between the first
 * `{` and the first `}` following it count. Keys sharing a tag therefore
 * share a slot, which is what lets a multi-key command (UNLINK a b c) run
 * on a cluster. Keys are binary: NUL and bytes >= 0x80 are ordinary bytes.
 */
#pragma once

#include <cstdint>
#include <string_view>

namespace cachebust {

/* Number of hash slots in a Redis Cluster. */
constexpr int kClusterSlots = 16384;

/* CRC16/XMODEM of bytes, as Redis computes it (table-driven). */
uint16_t crc16(std::string_view bytes);

/* The part of key that is hashed: the hash tag if there is one, else key. */
std::string_view hash_tag_part(std::string_view key);

/* The cluster slot of key, in [0, kClusterSlots). */
uint16_t key_slot(std::string_view key);

} // namespace cachebust
