// The nudge binary: the command line (src/cli) with `serve` wired to the server (src/app).
#include <string_view>

#include "app/offline.h"
#include "app/serve.h"
#include "cli/cli.h"
#include "core/huge_pages.h"

int main(int argc, char** argv) {
  // The server holds every contact in memory: its heap gets huge pages (core/huge_pages.h).
  if (argc > 1 && std::string_view(argv[1]) == "serve") nudge::core::ReexecWithHugePages(argv);
  nudge::cli::Commands commands;
  commands.serve = [](const nudge::cli::ServeFlags& f) {
    return nudge::app::RunServe({f.config, f.listen, f.data});
  };
  commands.validate = [](const std::string& dir) { return nudge::app::RunValidate(dir); };
  commands.simulate = [](const nudge::cli::SimulateArgs& a) {
    return nudge::app::RunSimulate({a.dir, a.events, a.contacts, a.after, a.json});
  };
  commands.graph = &nudge::app::RunGraph;
  commands.render = &nudge::app::RunRender;
  return nudge::cli::Run(argc, argv, commands);
}
