// The commands that work on a workspace directory without a server: `nudge validate DIR`,
// `nudge simulate DIR --events events.jsonl`, `nudge graph FILE.yaml`. Each returns the
// process exit code (0 fine, 1 problems found, 2 bad usage).
#pragma once

#include <optional>
#include <string>

namespace nudge::app {

int RunValidate(const std::string& dir);

struct SimulateFlags {
  std::string dir;
  std::string events;                   // JSON Lines of Segment messages
  std::optional<std::string> contacts;  // JSON Lines of identify messages (or {userId, traits})
  std::string after = "30d";            // how long to run on after the last event
  bool json = false;
};
int RunSimulate(const SimulateFlags& flags);

// `nudge render FILE [--context ctx.json] [--html]`: a .liquid file rendered to standard output
// (text mode, or HTML mode with html), or every part of a template YAML as JSON. Partials are
// found beside FILE (<name>.liquid, or <name>.yaml with channel: partial).
int RunRender(const std::string& file, const std::optional<std::string>& context, bool html);

int RunGraph(const std::string& file, const std::optional<std::string>& out,
             const std::optional<std::string>& svg);

}  // namespace nudge::app
