// Trait objects as the Segment spec merges them: a shallow merge where a later value wins
// and an explicit null removes the trait. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace nudge::profile {

// Merges the JSON object `patch` into the JSON object `base` and returns the result as
// compact JSON. Keys of `patch` whose value is null are removed from the result.
// kInvalidArgument when either text is not a JSON object.
Result<std::string> MergeTraits(std::string_view base, std::string_view patch);

// Fills `into` with the traits of `from` that `into` lacks (`into` wins on conflicts).
Result<std::string> FillTraits(std::string_view into, std::string_view from);

// Unions two JSON arrays of strings, keeping first-seen order.
Result<std::string> UnionTags(std::string_view a, std::string_view b);

}  // namespace nudge::profile
