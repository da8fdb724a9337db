// liquid_bench: nudge's side of bench/liquid/run.sh. Loads the cases of the Liquid corpus,
// then measures, each for SECONDS seconds on one thread:
//   parses/s   Template::Compile of every case, round after round;
//   renders/s  Render of every pre-compiled case with its pre-built Context, round after round.
// Writes each case's first render to OUT.jsonl ({"name", "output"}) for the comparison with
// LiquidJS and ruby-liquid, and prints one JSON object with the figures.
//
// Usage: liquid_bench SECONDS OUT.jsonl FILE.jsonl...
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "content/liquid.h"

namespace {

using nlohmann::ordered_json;
using nudge::content::Context;
using nudge::content::PartialMap;
using nudge::content::RenderOptions;
using nudge::content::Template;
using Clock = std::chrono::steady_clock;

struct Case {
  std::string name;
  std::string source;
  std::shared_ptr<const Template> tmpl;
  Context context;
  std::unique_ptr<PartialMap> partials;
};

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: liquid_bench SECONDS OUT.jsonl FILE.jsonl...\n";
    return 2;
  }
  const double seconds = std::stod(argv[1]);
  std::vector<Case> cases;
  size_t skipped = 0;
  for (int i = 3; i < argc; ++i) {
    std::ifstream in(argv[i]);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const ordered_json c = ordered_json::parse(line);
      Case k;
      k.name = c.value("name", "");
      k.source = c.value("template", "");
      auto t = Template::Compile(k.source);
      auto ctx = Context::FromJson(c.contains("context") ? c["context"] : ordered_json::object());
      if (!t || !ctx) {
        ++skipped;
        continue;
      }
      k.tmpl = *t;
      k.context = std::move(*ctx);
      if (c.contains("globals")) {
        for (const auto& [key, v] : c["globals"].items()) k.context.SetGlobalOrdered(key, v);
      }
      k.partials = std::make_unique<PartialMap>();
      if (c.contains("partials")) {
        for (const auto& [key, v] : c["partials"].items()) {
          (void)k.partials->Add(key, v.get<std::string>());
        }
      }
      cases.push_back(std::move(k));
    }
  }

  // First renders, for the comparison.
  {
    std::ofstream out(argv[2]);
    for (const Case& k : cases) {
      RenderOptions o;
      o.partials = k.partials.get();
      auto r = k.tmpl->Render(k.context, o);
      ordered_json j;
      j["name"] = k.name;
      if (r) {
        j["output"] = *r;
      } else {
        j["error"] = r.error().ToString();
      }
      out << j.dump(-1, ' ', false, ordered_json::error_handler_t::replace) << "\n";
    }
  }

  // Parses.
  uint64_t parses = 0;
  auto start = Clock::now();
  auto now = start;
  do {
    for (const Case& k : cases) {
      auto t = Template::Compile(k.source);
      if (!t) return 1;
      ++parses;
    }
    now = Clock::now();
  } while (Seconds(start, now) < seconds);
  const double parse_rate = static_cast<double>(parses) / Seconds(start, now);

  // Renders, reusing one output buffer as a mail merge would.
  std::vector<RenderOptions> options(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) options[i].partials = cases[i].partials.get();
  uint64_t renders = 0;
  size_t bytes = 0;
  std::string buf;
  start = Clock::now();
  do {
    for (size_t i = 0; i < cases.size(); ++i) {
      buf.clear();
      (void)cases[i].tmpl->RenderTo(cases[i].context, options[i], &buf);
      bytes += buf.size();
      ++renders;
    }
    now = Clock::now();
  } while (Seconds(start, now) < seconds);
  const double render_rate = static_cast<double>(renders) / Seconds(start, now);

  ordered_json result;
  result["engine"] = "nudge";
  result["cases"] = cases.size();
  result["skipped"] = skipped;
  result["parses_per_s"] = static_cast<int64_t>(parse_rate);
  result["renders_per_s"] = static_cast<int64_t>(render_rate);
  result["output_bytes"] = bytes;
  std::cout << result.dump() << "\n";
  return 0;
}
