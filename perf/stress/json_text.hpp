// JSON string quoting for the harnesses' --json output (ringhub-stress and ringhub-perf): the only JSON
// they write that is not a number is text, and these two functions escape it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ringhub::stress {

std::string json_string(std::string_view text);                   // "text", escaped
std::string json_strings(const std::vector<std::string>& items);  // ["a", "b"]

}  // namespace ringhub::stress
