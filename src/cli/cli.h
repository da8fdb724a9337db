// The `nudge` command line. Every command but serve (and, later, validate and simulate) is a
// client of the admin API. Exit codes: 0 success, 1 failure, 2 bad usage or configuration.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace nudge::cli {

struct ServeFlags {
  std::optional<std::string> config;
  std::optional<std::string> listen;
  std::optional<std::string> data;
};

// Commands implemented above this module (the server lives in src/app).
struct Commands {
  std::function<int(const ServeFlags&)> serve;
};

int Run(int argc, char** argv, const Commands& commands);

}  // namespace nudge::cli
