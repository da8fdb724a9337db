// liquid_render: renders the Liquid corpus (tests/liquid/corpus/*.jsonl) with nudge, in text
// mode, for the differential test against ruby-liquid (tests/liquid/run.sh).
//
// Input: JSONL files, one case per line:
//   {"name": "...", "template": "...", "context": {...}, "partials": {"name": "source"},
//    "globals": {...}}
// Output (standard output): one JSON line per case, {"name": ..., "output": "..."} or
// {"name": ..., "error": "..."} when the template does not compile or the render fails.
//
// Usage: liquid_render FILE.jsonl...
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "content/liquid.h"

namespace {

using nlohmann::ordered_json;
using nudge::content::Context;
using nudge::content::PartialMap;
using nudge::content::RenderOptions;
using nudge::content::Template;

ordered_json RenderCase(const ordered_json& c) {
  ordered_json out;
  out["name"] = c.value("name", "");
  auto fail = [&](const nudge::Status& st) {
    out["error"] = st.ToString();
    return out;
  };
  auto tmpl = Template::Compile(c.value("template", ""));
  if (!tmpl) return fail(tmpl.error());
  auto ctx = Context::FromJson(c.contains("context") ? c["context"] : ordered_json::object());
  if (!ctx) return fail(ctx.error());
  if (c.contains("globals")) {
    for (const auto& [k, v] : c["globals"].items()) ctx->SetGlobalOrdered(k, v);
  }
  PartialMap partials;
  if (c.contains("partials")) {
    for (const auto& [k, v] : c["partials"].items()) {
      auto st = partials.Add(k, v.get<std::string>());
      if (!st.ok()) return fail(st);
    }
  }
  RenderOptions options;
  options.partials = &partials;
  auto rendered = (*tmpl)->Render(*ctx, options);
  if (!rendered) return fail(rendered.error());
  out["output"] = *rendered;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: liquid_render FILE.jsonl...\n";
    return 2;
  }
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i]);
    if (!in) {
      std::cerr << "liquid_render: cannot read " << argv[i] << "\n";
      return 2;
    }
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      ordered_json c;
      try {
        c = ordered_json::parse(line);
      } catch (const std::exception& e) {
        std::cerr << argv[i] << ":" << line_no << ": " << e.what() << "\n";
        return 2;
      }
      std::cout << RenderCase(c).dump(-1, ' ', false, ordered_json::error_handler_t::replace)
                << "\n";
    }
  }
  return 0;
}
