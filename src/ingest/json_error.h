// Where a JSON text goes wrong, for error messages. simdjson says only that a document is
// invalid; on that (rare) path nudge re-reads the text to say what and at which line:column.
#pragma once

#include <string_view>

#include "core/status.h"

namespace nudge::ingest {

// kInvalidArgument with where = "line:column" (1-based) and what was wrong there.
// Also called for text that is in fact valid, in which case it says so.
Status DescribeJsonError(std::string_view text);

}  // namespace nudge::ingest
