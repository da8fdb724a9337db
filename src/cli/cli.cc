#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "cli/import_command.h"
#include "cli/workspace_commands.h"

namespace nudge::cli {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "nudge: %s\n", s.ToString().c_str());
  return s.code() == Code::kInvalidArgument ? 2 : 1;
}

struct ClientFlags {
  std::optional<std::string> server;
  std::optional<std::string> key;
};

void AddClientFlags(CLI::App& cmd, ClientFlags& f) {
  cmd.add_option("--server", f.server,
                 "nudge's URL (default $NUDGE_SERVER or http://127.0.0.1:8080)");
  cmd.add_option("--key", f.key, "admin key (default $NUDGE_ADMIN_KEY)");
}

int WorkspaceCreate(const ClientFlags& f, const std::string& name) {
  auto client = ApiClient::Make(f.server, f.key);
  if (!client) return Fail(client.error());
  auto r = client->CallOk("POST", "/api/v1/workspaces", nlohmann::json{{"name", name}}.dump());
  if (!r) return Fail(r.error());
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (!j.is_object()) return Fail(Status::Internal("the server's answer is not JSON"));
  std::printf(
      "Created workspace '%s'. Keep these keys; they are shown only now.\n"
      "  write key:  %s\n  admin key:  %s\n",
      j.value("name", name).c_str(), j.value("write_key", "").c_str(),
      j.value("admin_key", "").c_str());
  return 0;
}

}  // namespace

int Run(int argc, char** argv, const Commands& commands) {
  CLI::App app{"nudge: marketing automation that reacts to what people do"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "nudge 0.1.0");

  ServeFlags serve;
  auto* serve_cmd = app.add_subcommand("serve", "run the server");
  serve_cmd->add_option("--config", serve.config, "nudge.yaml (default $NUDGE_CONFIG)");
  serve_cmd->add_option("--listen", serve.listen, "host:port (default 127.0.0.1:8080)");
  serve_cmd->add_option("--data", serve.data, "data directory (default ./data)");
  int exit_code = 0;
  serve_cmd->callback([&] { exit_code = commands.serve ? commands.serve(serve) : 1; });

  auto* ws_cmd = app.add_subcommand("workspace", "manage workspaces");
  ws_cmd->require_subcommand(1);
  ClientFlags ws_flags;
  std::string ws_name;
  auto* ws_create = ws_cmd->add_subcommand("create",
                                           "create a workspace and print its keys "
                                           "(needs the default workspace's admin key)");
  ws_create->add_option("name", ws_name, "workspace name")->required();
  AddClientFlags(*ws_create, ws_flags);
  ws_create->callback([&] { exit_code = WorkspaceCreate(ws_flags, ws_name); });

  std::string validate_dir;
  auto* validate = app.add_subcommand("validate",
                                      "check a workspace directory offline: every "
                                      "problem with file:line:column");
  validate->add_option("dir", validate_dir, "the workspace directory")->required();
  validate->callback([&] { exit_code = commands.validate ? commands.validate(validate_dir) : 1; });

  SimulateArgs sim;
  auto* simulate = app.add_subcommand("simulate",
                                      "rehearse the workspace's journeys on a virtual "
                                      "clock against recorded events; sends nothing");
  simulate->add_option("dir", sim.dir, "the workspace directory")->required();
  simulate->add_option("--events", sim.events, "events, one Segment JSON message per line")
      ->required();
  simulate->add_option("--contacts", sim.contacts, "contacts, one identify per line");
  simulate->add_option("--after", sim.after,
                       "keep the clock running this long after the last event (default 30d)");
  simulate->add_flag("--json", sim.json, "print the report as JSON");
  simulate->callback([&] { exit_code = commands.simulate ? commands.simulate(sim) : 1; });

  std::string graph_file;
  std::optional<std::string> graph_out, graph_svg;
  auto* graph =
      app.add_subcommand("graph", "draw a journey: Graphviz DOT, and SVG when dot is installed");
  graph->add_option("file", graph_file, "the journey file")->required();
  graph->add_option("-o,--out", graph_out, "write the DOT here (default: standard output)");
  graph->add_option("--svg", graph_svg, "also render SVG to this file (needs Graphviz's dot)");
  graph->callback(
      [&] { exit_code = commands.graph ? commands.graph(graph_file, graph_out, graph_svg) : 1; });

  std::string render_file;
  std::optional<std::string> render_context;
  bool render_html = false;
  auto* render = app.add_subcommand(
      "render",
      "render a template offline: a .liquid file to standard output exactly as rendered, or "
      "every part of a template YAML as JSON");
  render->add_option("file", render_file, "a .liquid file or a template YAML")->required();
  render->add_option("--context", render_context,
                     "a JSON file with the variables (contact, event, message, ...)");
  render->add_flag("--html", render_html,
                   "render a .liquid file as an HTML part is rendered (output escaped)");
  render->callback([&] {
    exit_code = commands.render ? commands.render(render_file, render_context, render_html) : 1;
  });

  AddImportCommand(app, exit_code);
  AddApplyCommand(app, exit_code);
  AddSegmentCommand(app, exit_code);
  AddSuppressCommand(app, exit_code);
  AddContactCommand(app, exit_code);
  AddExportCommand(app, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return exit_code;
}

}  // namespace nudge::cli
