// `nudge apply -f DIR` (publish a workspace directory: segments, scoring, stages) and
// `nudge segment preview 'CONDITION'`: clients of the admin API.
#pragma once

#include <CLI/CLI.hpp>

namespace nudge::cli {

void AddApplyCommand(CLI::App& app, int& exit_code);
void AddSegmentCommand(CLI::App& app, int& exit_code);
void AddSuppressCommand(CLI::App& app, int& exit_code);
// `nudge contact show KEY` and `nudge contact erase KEY --yes` (GDPR erasure).
void AddContactCommand(CLI::App& app, int& exit_code);
// `nudge export events [-o FILE] [--origin client|all]`: JSON Lines for `nudge simulate`.
void AddExportCommand(CLI::App& app, int& exit_code);

}  // namespace nudge::cli
