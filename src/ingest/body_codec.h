// How tracking request bodies are kept between their acknowledgement and their application:
// bodies from kCompressFrom bytes up are stored in the inbox, and held in the backlog, as a
// zstd frame (fast level 3, with a checksum of the content). The benchmark's batch of 20 events
// goes from 13,212 to about 2,800 bytes: that much less to write and fsync before the answer, and
// to hold while a burst waits to be applied. Pure functions; thread-safe (each thread keeps its own
// zstd contexts and buffer).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/result.h"

namespace nudge::ingest {

// Smaller bodies (a single call, ~0.5-1 KB) gain little and are kept as they are.
inline constexpr size_t kCompressFrom = 1024;

// A zstd frame of `body`.
std::string CompressBody(std::string_view body);

// The body back from a frame CompressBody made. kInvalidArgument for a corrupt or truncated
// frame, kTooLarge when it says it holds more than max_output bytes.
Result<std::string> DecompressBody(std::string_view frame, size_t max_output);

}  // namespace nudge::ingest
