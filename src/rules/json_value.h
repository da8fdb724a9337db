// Turning JSON (simdjson DOM elements) into Values and looking up paths in it. Only .cc files
// include this: simdjson's header is large.
#pragma once

#include <simdjson.h>

#include <span>
#include <string>
#include <string_view>

#include "rules/value.h"

namespace nudge::rules {

// Scalars become kNull/kBool/kNumber/kString (a view into the document); arrays and objects
// become kJson holding the element.
Value FromJson(const simdjson::dom::element& element);
simdjson::dom::element ToJson(const Value& value);  // value.type must be kJson

// The value at `path` (object keys, or array indexes written as digits) under `root`; kNull
// when any step is missing.
Value Lookup(const simdjson::dom::element& root, std::span<const std::string> path);

}  // namespace nudge::rules
