// The nudge binary: the command line (src/cli) with `serve` wired to the server (src/app).
#include "app/serve.h"
#include "cli/cli.h"

int main(int argc, char** argv) {
  nudge::cli::Commands commands;
  commands.serve = [](const nudge::cli::ServeFlags& f) {
    return nudge::app::RunServe({f.config, f.listen, f.data});
  };
  return nudge::cli::Run(argc, argv, commands);
}
