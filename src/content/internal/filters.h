// The standard filters, as the FilterRegistry registers them.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "content/internal/ast.h"

namespace nudge::content::internal {

struct BuiltinFilter {
  std::string_view name;
  int min_args;  // arguments after the input; keyword arguments count as one, as in Ruby
  int max_args;
  FilterRegistry::Entry::Builtin fn;
};

// Sorted by name.
const std::vector<BuiltinFilter>& BuiltinFilters();

}  // namespace nudge::content::internal
