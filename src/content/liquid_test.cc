// The Liquid engine's API: compile errors with their positions, HTML mode, limits, the
// caller's filters and partials, contexts from JSON, concurrent renders. Ruby compatibility is
// tested by the corpus in tests/liquid/ (tests/liquid/run.sh).
#include "content/liquid.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

namespace nudge::content {
namespace {

std::string Render(std::string_view source, const nlohmann::json& data = nlohmann::json::object(),
                   const RenderOptions& options = {}) {
  auto t = Template::Compile(source);
  if (!t) return "COMPILE ERROR " + t.error().ToString();
  auto ctx = Context::FromJson(data);
  if (!ctx) return "CONTEXT ERROR " + ctx.error().ToString();
  auto out = (*t)->Render(*ctx, options);
  if (!out) return "RENDER ERROR " + out.error().ToString();
  return *out;
}

Status CompileError(std::string_view source, const CompileOptions& options = {}) {
  auto t = Template::Compile(source, options);
  if (t) return Status::Ok();
  return t.error();
}

// ---- compiling

TEST(LiquidCompile, RendersVariablesAndFilters) {
  EXPECT_EQ(Render("Hi {{ contact.name | upcase }}!", {{"contact", {{"name", "ada"}}}}), "Hi ADA!");
}

TEST(LiquidCompile, UnknownTagNamesItsPosition) {
  const Status st = CompileError("line one\n  {% frobnicate x %}");
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.where(), "2:3");
  EXPECT_NE(st.message().find("unknown tag 'frobnicate'"), std::string::npos) << st.message();
}

TEST(LiquidCompile, StrayEndTag) {
  const Status st = CompileError("a {% endfor %}");
  EXPECT_EQ(st.where(), "1:3");
  EXPECT_NE(st.message().find("unknown tag 'endfor'"), std::string::npos) << st.message();
}

TEST(LiquidCompile, UnclosedBlockPointsAtItsStart) {
  const Status st = CompileError("x\n{% for i in list %}\n{{ i }}");
  EXPECT_EQ(st.where(), "2:1");
  EXPECT_EQ(st.message(), "'for' is not closed");
}

TEST(LiquidCompile, WrongEndTag) {
  const Status st = CompileError("{% if a %}x{% endfor %}");
  EXPECT_EQ(st.where(), "1:12");
  EXPECT_NE(st.message().find("'endfor' does not close 'if'"), std::string::npos) << st.message();
}

TEST(LiquidCompile, UnknownFilterSuggestsTheClosest) {
  const Status st = CompileError("{{ name | upcasee }}");
  EXPECT_EQ(st.where(), "1:11");
  EXPECT_EQ(st.message(), "unknown filter 'upcasee' (did you mean upcase?)");
}

TEST(LiquidCompile, FilterArgumentCount) {
  const Status st = CompileError("{{ 'a' | append }}");
  EXPECT_NE(st.message().find("filter 'append' takes 1 argument, 0 given"), std::string::npos)
      << st.message();
  EXPECT_TRUE(CompileError("{{ 'a' | default: 'b', allow_false: true }}").ok());
}

TEST(LiquidCompile, ColumnsCountCharacters) {
  const Status st = CompileError("héllo wörld {{ x | nope }}");
  EXPECT_EQ(st.where(), "1:20");
}

TEST(LiquidCompile, UnterminatedDelimiters) {
  EXPECT_EQ(CompileError("abc {{ name").where(), "1:5");
  EXPECT_EQ(CompileError("abc\n {% if x").where(), "2:2");
  EXPECT_NE(CompileError("{{ 'a}' }}").message().find("'}'"), std::string::npos);
}

TEST(LiquidCompile, MarkupErrors) {
  EXPECT_EQ(CompileError("{% if a = 1 %}{% endif %}").message(),
            "unexpected '=' (compare with '==')");
  EXPECT_EQ(CompileError("{% for i items %}{% endfor %}").code(), Code::kInvalidArgument);
  EXPECT_EQ(CompileError("{% assign = 1 %}").code(), Code::kInvalidArgument);
  EXPECT_EQ(CompileError("{{ a | }}").code(), Code::kInvalidArgument);
  EXPECT_EQ(CompileError("{{ 'abc }}").code(), Code::kInvalidArgument);
  EXPECT_EQ(CompileError("{% for i in x limit: 1 foo: 2 %}{% endfor %}").code(),
            Code::kInvalidArgument);
  EXPECT_EQ(CompileError("{% render name %}").code(), Code::kInvalidArgument);
  EXPECT_EQ(CompileError("{% else %}").code(), Code::kInvalidArgument);
  EXPECT_EQ(CompileError("{% case x %}{% else y %}{% endcase %}").code(), Code::kInvalidArgument);
  EXPECT_EQ(CompileError("{% raw %}abc").message(), "'raw' is not closed");
}

TEST(LiquidCompile, CommentsAreNotCheckedForFilters) {
  EXPECT_TRUE(CompileError("{% comment %}{{ x | nope }}{% endcomment %}").ok());
}

TEST(LiquidCompile, NestingLimit) {
  std::string deep;
  for (int i = 0; i < 150; ++i) deep += "{% if true %}";
  for (int i = 0; i < 150; ++i) deep += "{% endif %}";
  EXPECT_NE(CompileError(deep).message().find("nesting too deep"), std::string::npos);
}

TEST(LiquidCompile, ListsLiteralPartialNames) {
  auto t = Template::Compile("{% render 'a' %}{% include 'b' %}{% render 'a' %}{% include x %}");
  ASSERT_TRUE(t);
  EXPECT_EQ((*t)->partial_names(), (std::vector<std::string>{"a", "b"}));
}

// ---- rendering as Ruby does

TEST(LiquidRender, MissingVariablesRenderEmpty) {
  EXPECT_EQ(Render("[{{ a }}{{ a.b.c }}{{ a[0] }}]"), "[]");
}

TEST(LiquidRender, RuntimeErrorsAreWrittenInlineLikeRuby) {
  EXPECT_EQ(Render("a{{ 1 | divided_by: 0 }}b"), "aLiquid error: divided by 0b");
  EXPECT_EQ(Render("{% if 1 > 'a' %}x{% endif %}"),
            "Liquid error: comparison of Integer with String failed");
  // As in Ruby, a tag whose body is blank does not write its error.
  EXPECT_EQ(Render("{% if 1 > 'a' %} {% endif %}"), "");
}

TEST(LiquidRender, StrictErrorsFailTheRender) {
  RenderOptions o;
  o.strict_errors = true;
  auto t = Template::Compile("line\n  {{ 1 | divided_by: 0 }}");
  ASSERT_TRUE(t);
  Context ctx;
  auto out = (*t)->Render(ctx, o);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(out.error().message(), "divided by 0");
  EXPECT_EQ(out.error().where(), "2:3");
}

TEST(LiquidRender, FloatsPrintAsRuby) {
  EXPECT_EQ(Render("{{ 0.1 | plus: 0.2 }} {{ 10 | divided_by: 4.0 }} {{ x }}", {{"x", 1e20}}),
            "0.3 2.5 1.0e+20");
}

TEST(LiquidRender, HashesKeepDocumentOrderWithOrderedJson) {
  auto t = Template::Compile("{% for p in h %}{{ p[0] }}{% endfor %}");
  ASSERT_TRUE(t);
  auto ctx = Context::FromJson(nlohmann::ordered_json::parse(R"({"h": {"z": 1, "a": 2}})"));
  ASSERT_TRUE(ctx);
  EXPECT_EQ(*(*t)->Render(*ctx), "za");
}

TEST(LiquidRender, ContextMustBeAnObject) {
  EXPECT_FALSE(Context::FromJson(nlohmann::json::array()));
}

TEST(LiquidRender, DateUsesTheInjectedClock) {
  core::VirtualClock clock(1709647629000);  // 2024-03-05T14:07:09Z
  RenderOptions o;
  o.clock = &clock;
  EXPECT_EQ(Render("{{ 'now' | date: '%F %T' }}", nlohmann::json::object(), o),
            "2024-03-05 14:07:09");
}

TEST(LiquidRender, RendersAreIndependent) {
  auto t = Template::Compile("{% increment n %}{% assign x = x | append: 'a' %}{{ x }}");
  ASSERT_TRUE(t);
  Context ctx;
  EXPECT_EQ(*(*t)->Render(ctx), "0a");
  EXPECT_EQ(*(*t)->Render(ctx), "0a");
}

TEST(LiquidRender, ConcurrentRendersOfOneTemplate) {
  auto t = Template::Compile(
      "{% for i in (1..50) %}{% cycle 'a','b' %}{{ user.name | upcase }}{% endfor %}");
  ASSERT_TRUE(t);
  auto ctx = Context::FromJson(nlohmann::json{{"user", {{"name", "x"}}}});
  ASSERT_TRUE(ctx);
  const std::string want = *(*t)->Render(*ctx);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        auto out = (*t)->Render(*ctx);
        if (!out || *out != want) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// ---- HTML mode

RenderOptions Html() {
  RenderOptions o;
  o.html = true;
  return o;
}

TEST(LiquidHtml, EscapesOutput) {
  EXPECT_EQ(Render("<p>{{ x }}</p>", {{"x", "<b>Tom & 'Jerry'</b>"}}, Html()),
            "<p>&lt;b&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;</p>");
}

TEST(LiquidHtml, TextModeDoesNot) { EXPECT_EQ(Render("{{ x }}", {{"x", "<b>"}}), "<b>"); }

TEST(LiquidHtml, EscapeIsNotDoubled) {
  EXPECT_EQ(Render("{{ x | escape }}|{{ x | escape_once }}|{{ y | escape_once }}",
                   {{"x", "a & b"}, {"y", "&amp; <"}}, Html()),
            "a &amp; b|a &amp; b|&amp; &lt;");
}

TEST(LiquidHtml, RawOptsOut) {
  EXPECT_EQ(Render("{{ x | raw }}", {{"x", "<i>ok</i>"}}, Html()), "<i>ok</i>");
  EXPECT_EQ(Render("{{ x | raw }}", {{"x", "<i>ok</i>"}}), "<i>ok</i>");
}

TEST(LiquidHtml, TemplateTextAndRawTagAreNotEscaped) {
  EXPECT_EQ(Render("<a href='x'>{% raw %}<b>{% endraw %}</a>", nlohmann::json::object(), Html()),
            "<a href='x'><b></a>");
}

TEST(LiquidHtml, CaptureIsEscapedOnce) {
  EXPECT_EQ(Render("{% capture c %}<i>{{ x }}</i>{% endcapture %}{{ c }}", {{"x", "&"}}, Html()),
            "<i>&amp;</i>");
}

TEST(LiquidHtml, FilteringASafeValueMakesItUnsafeAgain) {
  EXPECT_EQ(Render("{{ x | escape | append: '<br>' }}", {{"x", "&"}}, Html()),
            "&amp;amp;&lt;br&gt;");
}

TEST(LiquidHtml, EchoCycleArraysAndErrors) {
  EXPECT_EQ(
      Render("{% echo x %}{% cycle x %}{{ list }}", {{"x", "<"}, {"list", {"<", ">"}}}, Html()),
      "&lt;&lt;&lt;&gt;");
  EXPECT_EQ(Render("{% include 'a<b>' %}", nlohmann::json::object(), Html()),
            "Liquid error: No such template &#39;a&lt;b&gt;&#39;");
}

TEST(LiquidHtml, JsonFilter) {
  EXPECT_EQ(Render("{{ x | json }}", {{"x", {{"a", {1, 2.5, nullptr, "q\""}}}}}),
            R"({"a":[1,2.5,null,"q\""]})");
}

// ---- limits

TEST(LiquidLimits, OutputSize) {
  RenderOptions o;
  o.max_output_bytes = 1000;
  auto out = Template::Compile("{% for i in (1..1000) %}xxxxxxxxxx{% endfor %}");
  ASSERT_TRUE(out);
  Context ctx;
  auto r = (*out)->Render(ctx, o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kTooLarge);
  EXPECT_NE(r.error().message().find("output is larger than 1000 bytes"), std::string::npos);
}

TEST(LiquidLimits, LoopIterationsCountAcrossLoops) {
  RenderOptions o;
  o.max_loop_iterations = 100;
  EXPECT_EQ(Render("{% for i in (1..60) %}{% endfor %}{% for i in (1..30) %}{% endfor %}ok",
                   nlohmann::json::object(), o),
            "ok");
  const std::string r =
      Render("{% for i in (1..10) %}{% for j in (1..11) %}{% endfor %}{% endfor %}",
             nlohmann::json::object(), o);
  EXPECT_NE(r.find("more than 100 loop iterations"), std::string::npos) << r;
}

TEST(LiquidLimits, HugeRangesDoNotAllocate) {
  const std::string r = Render("{% for i in (1..9000000000000) %}{% endfor %}");
  EXPECT_NE(r.find("loop iterations"), std::string::npos) << r;
  const std::string s = Render("{{ (1..9000000000000) | join }}");
  EXPECT_NE(s.find("memory"), std::string::npos) << s;
}

TEST(LiquidLimits, RenderTime) {
  RenderOptions o;
  o.max_render_micros = 20'000;
  o.max_loop_iterations = 1'000'000'000;
  o.max_output_bytes = 1ull << 40;
  o.max_memory_bytes = 1ull << 40;
  const std::string r = Render(
      "{% for a in (1..100000) %}{% for b in (1..100000) %}{% assign c = b | plus: a %}"
      "{% endfor %}{% endfor %}",
      nlohmann::json::object(), o);
  EXPECT_NE(r.find("rendering took longer than 20 ms"), std::string::npos) << r;
}

TEST(LiquidLimits, Memory) {
  RenderOptions o;
  o.max_memory_bytes = 1 << 20;
  o.max_output_bytes = 1ull << 40;
  const std::string r = Render(
      "{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..30) %}{% assign s = s | append: s "
      "%}{% endfor %}{{ s | size }}",
      nlohmann::json::object(), o);
  EXPECT_NE(r.find("more than 1048576 bytes of memory"), std::string::npos) << r;
}

TEST(LiquidLimits, PartialDepth) {
  PartialMap partials;
  ASSERT_TRUE(partials.Add("loop", "x{% include 'loop' %}").ok());
  ASSERT_TRUE(partials.Add("self", "y{% render 'self' %}").ok());
  RenderOptions o;
  o.partials = &partials;
  o.max_partial_depth = 5;
  const std::string a = Render("{% include 'loop' %}", nlohmann::json::object(), o);
  EXPECT_NE(a.find("partials are nested more than 5 deep"), std::string::npos) << a;
  const std::string b = Render("{% render 'self' %}", nlohmann::json::object(), o);
  EXPECT_NE(b.find("partials are nested more than 5 deep"), std::string::npos) << b;
}

// ---- the caller's filters and partials

TEST(LiquidFilters, CallerFilters) {
  auto reg = std::make_shared<FilterRegistry>();
  ASSERT_TRUE(reg->Add(
                     "money",
                     [](FilterCall& call) -> Result<Value> {
                       const std::string currency =
                           call.arg_count() > 0 ? std::string(call.arg(0).AsString()) : "EUR";
                       const double v = call.input().kind() == ValueKind::kInt
                                            ? static_cast<double>(call.input().AsInt())
                                            : call.input().AsFloat();
                       char buf[64];
                       std::snprintf(buf, sizeof(buf), "%.2f %s", v, currency.c_str());
                       return call.String(buf);
                     },
                     0, 1)
                  .ok());
  ASSERT_TRUE(reg->Add(
                     "shout",
                     [](FilterCall& call) -> Result<Value> {
                       if (!call.input().is_string()) return Err(Status::Invalid("not a string"));
                       std::string s(call.input().AsString());
                       s += call.keyword("mark").is_nil()
                                ? "!"
                                : std::string(call.keyword("mark").AsString());
                       return call.String(s);
                     },
                     0, 1)
                  .ok());
  CompileOptions co;
  co.filters = reg;
  auto t = Template::Compile(
      "{{ 12.5 | money }} {{ 3 | money: 'USD' }} {{ 'hi' | shout }} "
      "{{ 'hi' | shout: mark: '?' }} {{ 1 | shout }}",
      co);
  ASSERT_TRUE(t) << t.error().ToString();
  Context ctx;
  EXPECT_EQ(*(*t)->Render(ctx), "12.50 EUR 3.00 USD hi! hi? Liquid error: not a string");
  EXPECT_EQ(CompileError("{{ 1 | money: 'a', 'b' }}", co).code(), Code::kInvalidArgument);
  EXPECT_EQ(CompileError("{{ 1 | money }}").message(), "unknown filter 'money'");
}

TEST(LiquidFilters, DuplicatesAreRefused) {
  FilterRegistry reg;
  auto fn = [](FilterCall& call) -> Result<Value> { return call.input(); };
  EXPECT_TRUE(reg.Add("mine", fn).ok());
  EXPECT_EQ(reg.Add("mine", fn).code(), Code::kAlreadyExists);
  EXPECT_EQ(reg.Add("upcase", fn).code(), Code::kAlreadyExists);
  EXPECT_EQ(reg.Add("bad name", fn).code(), Code::kInvalidArgument);
  EXPECT_TRUE(reg.Has("mine"));
  EXPECT_TRUE(FilterRegistry::Standard()->Has("where"));
  EXPECT_FALSE(FilterRegistry::Standard()->Has("mine"));
}

TEST(LiquidFilters, FiltersSeeTheContextAndTheClock) {
  auto reg = std::make_shared<FilterRegistry>();
  ASSERT_TRUE(reg->Add("tz",
                       [](FilterCall& call) -> Result<Value> {
                         Value tz = call.Variable("contact").Find("timezone");
                         return call.String(std::string(tz.AsString()) + "@" +
                                            std::to_string(call.now()) + (call.html() ? "h" : "t"));
                       })
                  .ok());
  CompileOptions co;
  co.filters = reg;
  auto t = Template::Compile("{{ 1 | tz }}", co);
  ASSERT_TRUE(t);
  auto ctx = Context::FromJson(nlohmann::json{{"contact", {{"timezone", "Europe/Berlin"}}}});
  core::VirtualClock clock(42);
  RenderOptions o;
  o.clock = &clock;
  EXPECT_EQ(*(*t)->Render(*ctx, o), "Europe/Berlin@42t");
}

TEST(LiquidPartials, RenderSeesGlobalsAndParametersOnly) {
  PartialMap partials;
  ASSERT_TRUE(partials.Add("card", "{{ shop }}/{{ contact.name }}/{{ title }}").ok());
  RenderOptions o;
  o.partials = &partials;
  auto t = Template::Compile("{% render 'card', title: 'T' %}|{% include 'card' %}");
  ASSERT_TRUE(t);
  auto ctx = Context::FromJson(nlohmann::json{{"contact", {{"name", "Ada"}}}});
  ctx->SetGlobal("shop", "S");
  EXPECT_EQ(*(*t)->Render(*ctx, o), "S//T|S/Ada/");
}

TEST(LiquidPartials, CompileErrorsNameThePartial) {
  PartialMap partials;
  const Status st = partials.Add("footer", "{% if %}");
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("partial 'footer': ", 0), 0u) << st.message();
}

TEST(LiquidPartials, MissingPartialWithoutLookup) {
  EXPECT_EQ(Render("{% render 'x' %}"), "Liquid error: No such template 'x'");
}

// ---- values

TEST(LiquidValue, ReadsWhatTheContextHolds) {
  auto ctx =
      Context::FromJson(nlohmann::json{{"a", {{"b", {1, 2.5, "s", true, nullptr}}}}, {"n", 5}});
  ASSERT_TRUE(ctx);
  const Value a = ctx->Find("a");
  EXPECT_EQ(a.kind(), ValueKind::kHash);
  EXPECT_EQ(a.KeyAt(0), "b");
  const Value b = a.Find("b");
  ASSERT_EQ(b.size(), 5u);
  EXPECT_EQ(b.At(0).AsInt(), 1);
  EXPECT_EQ(b.At(1).AsFloat(), 2.5);
  EXPECT_EQ(b.At(2).AsString(), "s");
  EXPECT_TRUE(b.At(3).AsBool());
  EXPECT_TRUE(b.At(4).is_nil());
  EXPECT_TRUE(b.At(9).is_nil());
  EXPECT_EQ(b.ToString(), "12.5strue");
  EXPECT_EQ(a.ToString(), R"({"b"=>[1, 2.5, "s", true, nil]})");
  EXPECT_TRUE(Value::Int(1) == Value::Float(1.0));
  EXPECT_FALSE(Value::Int(0).truthy() == false);
}

}  // namespace
}  // namespace nudge::content
