// libFuzzer target: the Liquid parser and renderer over arbitrary template text. Besides the
// sanitizers' findings it checks the engine's promises: compile errors carry a "line:column",
// a compiled template renders (text and HTML mode, lax and strict errors) without passing its
// limits, and a render that fails does so only with kTooLarge (a limit) or, in strict mode,
// kInvalidArgument. Partials come from a small fixed map (one of them includes itself).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "content/liquid.h"
#include "core/clock.h"

namespace {

using nudge::Code;
using nudge::content::Context;
using nudge::content::PartialMap;
using nudge::content::RenderOptions;
using nudge::content::Template;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Fixture {
  Context context;
  PartialMap partials;
  nudge::core::VirtualClock clock{1709647629000};

  Fixture() {
    auto data = nlohmann::ordered_json::parse(R"({
      "contact": {"id": "c1", "email": "a@b.c", "score": 57,
                  "traits": {"first_name": "ada", "plan": "trial", "credits": 12.5,
                             "tags": ["vip", "beta"], "signup_at": "2024-01-15T09:30:00Z"}},
      "items": [{"name": "A", "price": 3, "qty": 1}, {"name": "B", "price": 1.5, "qty": 2}],
      "h": {"a": 1, "b": [1, 2, {"c": null}]},
      "s": "héllo <b>wörld</b> & co", "n": 42, "f": 0.1, "t": true, "z": null, "e": []
    })");
    context = std::move(*Context::FromJson(data));
    context.SetGlobal("shop", nlohmann::json{{"name", "Shop"}});
    Check(partials.Add("card", "<{{ title }}|{{ card }}|{{ forloop.index }}>").ok());
    Check(partials.Add("self", "x{% include 'self' %}").ok());
    Check(partials.Add("loop", "{% for i in (1..3) %}{% render 'card', title: i %}{% endfor %}")
              .ok());
  }
};

void RenderAll(const Template& t, Fixture& f) {
  for (int mode = 0; mode < 4; ++mode) {
    RenderOptions o;
    o.html = (mode & 1) != 0;
    o.strict_errors = (mode & 2) != 0;
    o.partials = &f.partials;
    o.clock = &f.clock;
    o.max_output_bytes = 64 << 10;
    o.max_loop_iterations = 20'000;
    o.max_render_micros = 2'000'000;
    o.max_partial_depth = 8;
    o.max_memory_bytes = 8 << 20;
    std::string out;
    const nudge::Status st = t.RenderTo(f.context, o, &out);
    if (st.ok()) {
      // Checked after each node: one node may pass the limit by what it wrote last.
      Check(out.size() <= o.max_output_bytes + o.max_memory_bytes);
    } else {
      Check(st.code() == Code::kTooLarge ||
            (o.strict_errors && st.code() == Code::kInvalidArgument));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fixture = new Fixture();
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  auto t = Template::Compile(source);
  if (!t) {
    Check(t.error().code() == Code::kInvalidArgument);
    Check(t.error().where().find(':') != std::string::npos);
    return 0;
  }
  RenderAll(**t, *fixture);
  return 0;
}
