/*
 * publish_message.hpp — what a subscriber of cachebust.publish_channel
 * receives for each delivered batch:
 *
 *   {"keys":[...],"patterns":[...],"tags":[...],"tag_patterns":[...],
 *    "bumps":[...],"bump_patterns":[...]}
 *
 * with empty lists left out and keys as their Redis names (prefixes
 * applied). Strings are JSON-escaped; a byte that is not part of valid
 * UTF-8 is written as \u00XX of its value, so any key survives the trip.
 */
#pragma once

#include <string>
#include <vector>

#include "core/target.hpp"

namespace cachebust {

std::string batch_json(const std::vector<Target> &targets);

/* JSON string literal (with quotes) of arbitrary bytes, as above. */
std::string json_string(const std::string &bytes);

} // namespace cachebust
