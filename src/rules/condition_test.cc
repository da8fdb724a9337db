#include "rules/condition.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <map>
#include <optional>
#include <set>

#include "core/time.h"
#include "rules/json_value.h"

namespace nudge::rules {
namespace {

using core::Millis;

constexpr Millis kDay = 86400000;

// A contact and, optionally, an event, as plain data.
class FakeEnv final : public Env {
 public:
  FakeEnv(std::string traits, std::string event = "{}")
      : traits_text_(std::move(traits)), event_text_(std::move(event)) {
    traits_ = traits_parser_.parse(traits_text_);
    event_ = event_parser_.parse(event_text_);
  }
  Millis Now() const override { return now; }
  Value Path(Root root, std::span<const std::string> path) const override {
    switch (root) {
      case Root::kTraits:
        return Lookup(traits_, path);
      case Root::kProperties:
        return Lookup(event_["properties"], path);
      case Root::kContext:
        return Lookup(event_["context"], path);
      case Root::kEvent:
        return Lookup(event_, path);
    }
    return Value::Null();
  }
  Value Aggregate(const AggregateSpec& spec) const override {
    auto it = aggregates.find(spec.key);
    if (it != aggregates.end()) return it->second;
    switch (spec.kind) {
      case AggregateSpec::Kind::kExists:
        return Value::Bool(false);
      case AggregateSpec::Kind::kCount:
      case AggregateSpec::Kind::kSum:
        return Value::Number(0);
      default:
        return Value::Null();
    }
  }
  std::optional<Millis> AggregateExpiry(const AggregateSpec& spec) const override {
    auto it = expiries.find(spec.key);
    if (it == expiries.end()) return std::nullopt;
    return it->second;
  }
  bool InSegment(std::string_view s) const override { return segments.count(std::string(s)) > 0; }
  bool Subscribed(std::string_view channel, std::string_view topic) const override {
    return subscriptions.count(std::string(channel) + "/" + std::string(topic)) > 0;
  }
  double Score() const override { return score; }
  std::string_view Stage() const override { return stage; }
  Millis FirstSeen() const override { return first_seen; }
  Millis LastSeen() const override { return last_seen; }
  Value Tags() const override {
    tag_values_.clear();
    for (const auto& t : tags) tag_values_.push_back(Value::String(t));
    return Value::List(tag_values_.data(), static_cast<uint32_t>(tag_values_.size()));
  }
  Value Source() const override { return source ? Value::String(*source) : Value::Null(); }

  std::vector<std::string> tags;
  std::optional<std::string> source;
  Millis now = *core::ParseIso8601("2026-11-24T10:00:00Z");
  std::map<std::string, Value> aggregates;
  std::map<std::string, Millis> expiries;
  std::set<std::string> segments;
  std::set<std::string> subscriptions;
  double score = 0;
  std::string stage;
  Millis first_seen = 0, last_seen = 0;

 private:
  std::string traits_text_, event_text_;
  simdjson::dom::parser traits_parser_, event_parser_;
  simdjson::dom::element traits_, event_;
  mutable std::vector<Value> tag_values_;
};

bool Eval(std::string_view text, const Env& env, CompileOptions options = {}) {
  auto c = Condition::Compile(text, options);
  EXPECT_TRUE(c) << text << ": " << c.error().ToString();
  return c && (*c)->Matches(env);
}

Status CompileError(std::string_view text, CompileOptions options = {}) {
  auto c = Condition::Compile(text, options);
  EXPECT_FALSE(c) << "expected an error for: " << text;
  return c ? Status::Ok() : c.error();
}

TEST(Condition, TraitsComparisonsAndLists) {
  FakeEnv env(R"({"plan":"trial","country":"DE","employees":120,"vip":true,"tags":["a","b"],
                 "address":{"city":"Berlin"},"first name":"Ann","trial_ends_at":"2026-11-26T00:00:00Z"})");
  EXPECT_TRUE(Eval(R"(traits.plan == "trial" and traits.country in ["DE", "FR"])", env));
  EXPECT_FALSE(Eval(R"(traits.plan == "trial" and traits.country not in ["DE", "FR"])", env));
  EXPECT_TRUE(Eval("traits.employees >= 50", env));
  EXPECT_TRUE(Eval("traits.employees == 120.0", env));
  EXPECT_FALSE(Eval("traits.missing > 3", env));  // null never orders
  EXPECT_TRUE(Eval("traits.missing == null and not traits.missing exists", env));
  EXPECT_TRUE(Eval("traits.missing != 3", env));
  EXPECT_TRUE(Eval("traits.vip == true", env));
  EXPECT_TRUE(Eval(R"(traits.tags contains "b")", env));
  EXPECT_TRUE(Eval(R"("a" in traits.tags)", env));
  EXPECT_TRUE(Eval(
      R"(traits.address.city starts_with "Ber" and traits.address.city ends_with "lin")", env));
  EXPECT_TRUE(Eval(R"(traits.plan contains "ria")", env));
  EXPECT_TRUE(Eval(R"(traits."first name" == "Ann")", env));
  EXPECT_TRUE(Eval(R"(traits.plan matches "^tr.*l$")", env));
  EXPECT_TRUE(Eval(R"(traits.plan matches "(?i)TRIAL")", env));
  EXPECT_FALSE(Eval(R"(traits.employees == "120")", env));    // a numeric string is not a number
  EXPECT_TRUE(Eval("traits.trial_ends_at < now + 3d", env));  // ISO strings compare as times
  EXPECT_FALSE(Eval("traits.trial_ends_at < now + 1d", env));
  EXPECT_TRUE(Eval("traits.trial_ends_at > 2026-11-25", env));
  EXPECT_TRUE(Eval(
      "(traits.plan == \"pro\" or traits.plan == \"trial\") and not traits.vip == false", env));
  EXPECT_TRUE(Eval("# comments run to the end of the line\ntraits.plan == \"trial\" # ok\n", env));
}

TEST(Condition, BehaviourReadsTheAggregatesTheEnvKeeps) {
  FakeEnv env("{}");
  auto c = *Condition::Compile(
      R"(count(event "Page Viewed" where properties.path == "/pricing" within 7d) >= 3)");
  ASSERT_EQ(c->aggregates().size(), 1u);
  const AggregateSpec& spec = *c->aggregates()[0];
  EXPECT_EQ(spec.kind, AggregateSpec::Kind::kCount);
  EXPECT_EQ(spec.event, "Page Viewed");
  EXPECT_EQ(*spec.window, 7 * kDay);
  ASSERT_TRUE(spec.where);
  EXPECT_FALSE(c->Matches(env));
  env.aggregates[spec.key] = Value::Number(3);
  EXPECT_TRUE(c->Matches(env));
  // The same term written differently is the same aggregate.
  auto d = *Condition::Compile(
      "count( event \"Page Viewed\"  where (properties.path==\"/pricing\") within 168h ) < 9");
  EXPECT_EQ(d->aggregates()[0]->key, spec.key);

  auto sum =
      *Condition::Compile(R"(sum(properties.revenue of event "Order Completed" within 30d) > 500)");
  env.aggregates[sum->aggregates()[0]->key] = Value::Number(501);
  EXPECT_TRUE(sum->Matches(env));

  auto last = *Condition::Compile(R"(last(event "Order Completed").timestamp < now - 90d)");
  EXPECT_FALSE(last->Matches(env));  // never ordered: null
  env.aggregates[last->aggregates()[0]->key] = Value::Time(env.now - 100 * kDay);
  EXPECT_TRUE(last->Matches(env));
}

TEST(Condition, WhereFiltersReadTheEventAndTheContact) {
  FakeEnv env(R"({"plan":"pro"})", R"({"name":"Video Progress","properties":{"percent":80}})");
  auto c = *Condition::Compile(
      R"(event "Video Progress" where properties.percent >= 75 and traits.plan == "pro" within 1d)");
  const auto& where = *c->aggregates()[0]->where;
  EXPECT_TRUE(where.Matches(env));
  // Trigger filters read the event at the top level.
  EXPECT_TRUE(Eval(R"(properties.percent >= 75 and event.name == "Video Progress")", env,
                   {.event_in_scope = true}));
}

TEST(Condition, SegmentsScoreStageSubscriptions) {
  FakeEnv env("{}");
  env.segments = {"engaged"};
  env.score = 55;
  env.stage = "Decision";
  env.subscriptions = {"email/", "email/news"};
  EXPECT_TRUE(Eval(R"(in segment "engaged" and subscribed(email) and score >= 50)", env));
  EXPECT_TRUE(Eval(R"(subscribed(topic "news") and not subscribed(sms))", env));
  EXPECT_TRUE(Eval(R"(stage == "Decision" and stage in ["Decision", "Retention"])", env));
  auto c = *Condition::Compile(R"(in segment "a" or in segment "b" or in segment "a")");
  EXPECT_EQ(c->segments(), (std::vector<std::string>{"a", "b"}));
  // "not" before "in segment", alone or after another test; "not in" of a list is the operator.
  EXPECT_FALSE(Eval(R"(not in segment "engaged")", env));
  EXPECT_TRUE(Eval(R"(not in segment "customers")", env));
  EXPECT_TRUE(Eval(R"(score >= 50 and not in segment "customers")", env));
  EXPECT_TRUE(Eval(R"(stage not in ["Awareness"] and not in segment "customers")", env));
  EXPECT_EQ((*Condition::Compile(R"(not in segment "x" or in segment "y")"))->segments(),
            (std::vector<std::string>{"x", "y"}));
}

TEST(Condition, NextChangeFindsWhenTimeFlipsTheResult) {
  FakeEnv env("{}");
  auto c = *Condition::Compile(R"(last(event "Order Completed").timestamp < now - 90d)");
  env.aggregates[c->aggregates()[0]->key] = Value::Time(env.now - 10 * kDay);
  auto next = c->NextChange(env);
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, env.now + 80 * kDay);

  auto w = *Condition::Compile(R"(count(event "Page Viewed" within 7d) >= 3)");
  env.expiries[w->aggregates()[0]->key] = env.now + 5 * kDay;
  EXPECT_EQ(*w->NextChange(env), env.now + 5 * kDay);
  EXPECT_FALSE(Condition::Compile("traits.a == 1").value()->NextChange(env));
}

TEST(Condition, ErrorsSayWhereAndHint) {
  Status s = CompileError("traits.plan = \"trial\"");
  EXPECT_EQ(s.where(), "1:13");
  EXPECT_NE(s.message().find("=="), std::string::npos);

  s = CompileError("trait.plan == \"x\"");
  EXPECT_EQ(s.where(), "1:1");
  EXPECT_NE(s.message().find("traits"), std::string::npos) << s.message();

  s = CompileError("count(event \"A\" within 7d) >= \"three\"");
  EXPECT_NE(s.message().find("cannot compare"), std::string::npos);

  s = CompileError("traits.plan == \"trial\" and\n  properties.path == \"/x\"");
  EXPECT_EQ(s.where(), "2:3");
  EXPECT_NE(s.message().find("belongs to an event"), std::string::npos);

  s = CompileError("traits.vip");
  EXPECT_NE(s.message().find("true or false"), std::string::npos);
  EXPECT_NE(s.message().find("exists"), std::string::npos);

  EXPECT_NE(CompileError("traits.a matches \"(unclosed\"").message().find("regular expression"),
            std::string::npos);
  EXPECT_NE(CompileError("traits.a matches \".{1000}.{1000}\"").message().find("expensive"),
            std::string::npos);
  EXPECT_FALSE(Condition::Compile("event \"A\" within 0s"));
  EXPECT_FALSE(Condition::Compile("event \"A\" within 4000d"));
  EXPECT_FALSE(Condition::Compile("now > 3d"));
  EXPECT_FALSE(Condition::Compile("now + now > now"));
  EXPECT_FALSE(Condition::Compile("score == true"));
  EXPECT_FALSE(Condition::Compile("traits.a in 3"));
  EXPECT_FALSE(Condition::Compile("(traits.a == 1"));
  EXPECT_FALSE(Condition::Compile("traits.a == 1)"));
  EXPECT_FALSE(Condition::Compile("traits.a == 'x'"));
  EXPECT_FALSE(Condition::Compile("traits.a == \"unclosed"));
  EXPECT_FALSE(Condition::Compile("event \"A\" where count(event \"B\") > 1"));
  EXPECT_FALSE(Condition::Compile("last(event \"A\") < now"));
  EXPECT_FALSE(Condition::Compile("traits.a == 12x"));
  EXPECT_FALSE(Condition::Compile(""));
  EXPECT_FALSE(Condition::Compile("   # only a comment"));
  EXPECT_FALSE(Condition::Compile("event.color == \"red\"", {.event_in_scope = true}));
}

// The contact's tags (from imports and journeys' update steps) and the source it came from:
// how a list was brought in is something to segment on.
TEST(Condition, TagsAndSource) {
  FakeEnv env(R"({"plan":"trial"})");
  env.tags = {"q4", "webinar-2026"};
  env.source = "mailchimp";
  EXPECT_TRUE(Eval(R"(tags contains "q4")", env));
  EXPECT_TRUE(Eval(R"("webinar-2026" in tags and source == "mailchimp")", env));
  EXPECT_FALSE(Eval(R"(tags contains "vip")", env));
  EXPECT_TRUE(Eval(R"("vip" not in tags)", env));
  EXPECT_TRUE(Eval(R"(source starts_with "mail")", env));
  FakeEnv none(R"({})");
  EXPECT_FALSE(Eval(R"(tags contains "q4")", none));
  EXPECT_TRUE(Eval("source == null", none));
  auto c = Condition::Compile(R"(tags contains "q4" or source == "crm")");
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)->reads(), Condition::kReadsContact);
  EXPECT_TRUE((*c)->trait_paths().empty()) << "no trait is read";
  EXPECT_NE(CompileError(R"(tag contains "q4")").message().find("did you mean tags?"),
            std::string::npos);
}

// What a condition reads besides its aggregates decides which conditions an event can affect.
TEST(Condition, ReadsNamesWhatTheResultDependsOn) {
  auto reads = [](std::string_view text) {
    auto c = Condition::Compile(text);
    EXPECT_TRUE(c) << text;
    return c ? (*c)->reads() : uint8_t{0xff};
  };
  EXPECT_EQ(reads(R"(count(event "Page Viewed" within 7d) >= 3)"), 0);
  EXPECT_EQ(reads(R"(traits.plan == "pro")"), Condition::kReadsTraits);
  EXPECT_EQ(reads("last_seen < now - 30d"), Condition::kReadsSeen);
  EXPECT_EQ(reads("first_seen > now - 1d"), Condition::kReadsSeen);
  EXPECT_EQ(reads("score >= 50 and stage == \"Decision\""),
            Condition::kReadsScore | Condition::kReadsStage);
  EXPECT_EQ(reads("subscribed(email) and in segment \"a\""), Condition::kReadsSubscribed);
  // A trait read inside an event term's where still counts.
  EXPECT_EQ(reads(R"(event "Order Completed" where traits.vip == true)"), Condition::kReadsTraits);
}

// Deep nesting is refused at its position, with what to change; it never takes the stack.
TEST(Condition, NestingDeeperThanAHundredLevelsIsRefused) {
  auto nested = [](int depth) {
    return std::string(depth, '(') + "traits.a == 1" + std::string(depth, ')');
  };
  EXPECT_TRUE(Condition::Compile(nested(99)));
  for (const std::string& text : {nested(3000),
                                  [] {
                                    std::string s;
                                    for (int i = 0; i < 15000; ++i) s += "not ";
                                    return s + "true";
                                  }(),
                                  [] {
                                    std::string s = "traits.a";
                                    for (int i = 0; i < 10000; ++i) s += " + 1";
                                    return s + " > 3";
                                  }()}) {
    auto c = Condition::Compile(text);
    ASSERT_FALSE(c) << text.substr(0, 40);
    EXPECT_NE(c.error().message().find("nested more than 100 levels"), std::string::npos)
        << c.error().ToString();
    EXPECT_EQ(c.error().where().rfind("1:", 0), 0u) << c.error().where();
  }
  // A long flat chain of or/and is not nesting.
  std::string flat = "traits.a == 0";
  for (int i = 1; i < 2000; ++i) flat += " or traits.a == " + std::to_string(i);
  EXPECT_TRUE(Condition::Compile(flat));
}

}  // namespace
}  // namespace nudge::rules
