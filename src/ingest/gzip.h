// Decompressing request bodies. RudderStack's node SDK sends gzip without saying so in
// Content-Type, so bodies are recognised by their magic bytes, not by headers.
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace nudge::ingest {

// True when data starts with the gzip magic bytes (1f 8b).
bool LooksGzipped(std::string_view data);

// Inflates a gzip stream (several members allowed). kTooLarge as soon as the output would
// pass max_output (so a small bomb never becomes a big allocation); kInvalidArgument for a
// corrupt or truncated stream.
Result<std::string> Gunzip(std::string_view data, size_t max_output);

}  // namespace nudge::ingest
