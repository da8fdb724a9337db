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

struct SimulateArgs {
  std::string dir;
  std::string events;
  std::optional<std::string> contacts;
  std::string after = "30d";
  bool json = false;
};

// Commands implemented above this module (the server and the offline tools live in src/app).
struct Commands {
  std::function<int(const ServeFlags&)> serve;
  std::function<int(const std::string& dir)> validate;
  std::function<int(const SimulateArgs&)> simulate;
  std::function<int(const std::string& file, const std::optional<std::string>& out,
                    const std::optional<std::string>& svg)>
      graph;
  std::function<int(const std::string& file, const std::optional<std::string>& context, bool html)>
      render;
};

int Run(int argc, char** argv, const Commands& commands);

}  // namespace nudge::cli
