#include "journey/definition.h"

#include <gtest/gtest.h>

namespace nudge::journey {
namespace {

std::vector<Status> Problems(const std::string& yaml, CheckOptions options = {}) {
  auto j = ParseJourney(yaml, "journeys/x.yaml");
  EXPECT_TRUE(j) << j.error().ToString();
  return j ? CheckJourney(*j, options) : std::vector<Status>{};
}

TEST(JourneyDefinition, MaxActiveIsReadForEveryTimeOnly) {
  auto every = ParseJourney(
      "id: x\ntrigger: { event: A }\nentry: every_time\nmax_active: 7\nsteps:\n  - { id: a, "
      "wait: 1d }\n",
      "x.yaml");
  ASSERT_TRUE(every) << every.error().ToString();
  EXPECT_EQ(every->max_active, 7);
  auto fallback = ParseJourney(
      "id: x\ntrigger: { event: A }\nentry: every_time\nsteps:\n  - { id: a, wait: 1d }\n",
      "x.yaml");
  ASSERT_TRUE(fallback);
  EXPECT_EQ(fallback->max_active, Journey::kDefaultMaxActive);
  auto once = ParseJourney(
      "id: x\ntrigger: { event: A }\nentry: once_per 7d\nmax_active: 2\nsteps:\n  - { id: a, "
      "wait: 1d }\n",
      "x.yaml");
  ASSERT_FALSE(once);
  EXPECT_EQ(once.error().where(), "x.yaml:4:13");
  auto huge = ParseJourney(
      "id: x\ntrigger: { event: A }\nentry: every_time\nmax_active: 10001\nsteps:\n  - { id: a, "
      "wait: 1d }\n",
      "x.yaml");
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message().find("from 1 to 10000"), std::string::npos)
      << huge.error().ToString();
}

TEST(JourneyDefinition, GraphProblemsAreAllListedWithPositions) {
  auto problems =
      Problems(R"(id: x
trigger: { event: A }
steps:
  - id: a
    send: { channel: email, template: missing }
    next: nowhere
  - id: orphan
    wait: 1d
  - id: b
    branch:
      - when: traits.x == 1
        next: c
      - else: a
  - id: c
    update: { set: { y: 1 } }
    next: b
)",
               {.template_exists = [](const std::string& t) { return t != "missing"; }});
  std::string all;
  for (const auto& p : problems) all += p.ToString() + "\n";
  EXPECT_NE(all.find("journeys/x.yaml:6:11: next: no step 'nowhere'"), std::string::npos) << all;
  // At the template's name, not at the step.
  EXPECT_NE(all.find("journeys/x.yaml:5:39: template: no template 'missing'"), std::string::npos)
      << all;
  EXPECT_NE(all.find("step 'orphan' can never be reached"), std::string::npos) << all;
  EXPECT_NE(all.find("journeys/x.yaml:7:5"), std::string::npos) << all;
  EXPECT_NE(all.find("never waits"), std::string::npos) << all;
}

TEST(JourneyDefinition, AJourneyHasAtMostAThousandSteps) {
  auto text = [](size_t n) {
    std::string t = "id: long\ntrigger: { event: A }\nsteps:\n";
    for (size_t i = 0; i < n; ++i) t += "  - { id: s" + std::to_string(i) + ", wait: 1m }\n";
    return t;
  };
  EXPECT_TRUE(ParseJourney(text(kMaxSteps), "j.yaml"));
  auto j = ParseJourney(text(kMaxSteps + 1), "j.yaml");
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().where(), "j.yaml:4:3") << j.error().ToString();
  EXPECT_NE(j.error().ToString().find("at most 1000 steps"), std::string::npos);
}

TEST(JourneyDefinition, ParsingErrorsSayWhere) {
  auto j = ParseJourney("id: x\ntrigger: { event: A }\nsteps:\n  - id: a\n    wait: forever\n",
                        "j.yaml");
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().where(), "j.yaml:5:11");
  j = ParseJourney(
      "id: x\ntrigger: { event: A, where: 'properties.p = 1' }\nsteps: [ { id: a, exit: true } ]\n",
      "j.yaml");
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().where(), "j.yaml:2:43") << j.error().ToString();
  EXPECT_FALSE(ParseJourney(
      "id: x\ntrigger: { event: A, segment_entered: s }\nsteps: [ { id: a, exit: true } ]\n", "j"));
  EXPECT_FALSE(ParseJourney(
      "id: x\ntrigger: { event: A }\nsteps: [ { id: a, send: { template: t }, wait: 1d } ]\n",
      "j"));
  EXPECT_FALSE(ParseJourney(
      "id: x\ntrigger: { event: A }\nentry: sometimes\nsteps: [ { id: a, exit: true } ]\n", "j"));
  EXPECT_FALSE(ParseJourney(
      "id: x\ntrigger: { event: A }\nsteps: [ { id: a, wait_for: { event: B } } ]\n", "j"));
  EXPECT_FALSE(ParseJourney(
      "id: x\ntrigger: { event: A }\nsteps: [ { id: a, exit: true }, { id: a, exit: true } ]\n",
      "j"));
  EXPECT_FALSE(ParseJourney("id: x\ntrigger: { event: A }\nsteps: []\n", "j"));
  // An empty file, and a duration with a unit nudge does not know.
  j = ParseJourney("\n", "j.yaml");
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().where(), "j.yaml:1:1") << j.error().ToString();
  j = ParseJourney("id: x\ntrigger: { event: A }\nsteps:\n  - id: a\n    wait: 30x\n", "j.yaml");
  ASSERT_FALSE(j);
  EXPECT_NE(j.error().ToString().find("unknown unit 'x'"), std::string::npos)
      << j.error().ToString();
}

// A webhook's Liquid is compiled when the journey is saved, and the headers nudge sets itself
// cannot be given: both are refused at their position instead of failing every delivery.
TEST(JourneyDefinition, AWebhookStepIsCheckedWhenSaved) {
  // A journey of one webhook step; `fields` are its lines from line 6 on.
  const auto hook = [](const std::string& fields) {
    return ParseJourney(
        "id: x\ntrigger: { event: A }\nsteps:\n  - id: hook\n    webhook:\n" + fields, "j.yaml");
  };
  auto j = hook("      url: \"http://127.0.0.1:9/crm/{{ contact.user_id\"\n");
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().where(), "j.yaml:6:36") << j.error().ToString();
  EXPECT_NE(j.error().message().find("url: "), std::string::npos) << j.error().ToString();
  j = hook(
      "      url: \"http://127.0.0.1:9/crm\"\n"
      "      body: '{\"total\": {{ event.properties.total | money: }}}'\n");
  ASSERT_FALSE(j);
  EXPECT_NE(j.error().where().find("j.yaml:7:"), std::string::npos) << j.error().ToString();
  j = hook(
      "      url: \"http://127.0.0.1:9/crm\"\n"
      "      headers: { Authorization: \"Bearer {{ workspace.id }}\", X-Nudge-Signature: forged "
      "}\n");
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().where(), "j.yaml:7:62") << j.error().ToString();
  // A name that is no HTTP field name could add lines of its own (a forged signature, a
  // Transfer-Encoding beside nudge's Content-Length).
  for (const std::string name :
       {"\"X-A\\r\\nX-Nudge-Signature\"", "\"X A\"", "\"X-A: b\"", "\"\""}) {
    j = hook("      url: \"http://127.0.0.1:9/crm\"\n      headers: { " + name + ": v }\n");
    ASSERT_FALSE(j) << name;
    EXPECT_EQ(j.error().where(), "j.yaml:7:18") << j.error().ToString();
    EXPECT_NE(j.error().message().find("header name"), std::string::npos) << j.error().ToString();
  }
  EXPECT_TRUE(IsHttpHeaderName("X-Api-Key"));
  EXPECT_TRUE(IsHttpHeaderName("x_custom.v2"));
  EXPECT_FALSE(IsHttpHeaderName("X-A\r\nX-B"));
  j = hook(
      "      url: \"http://127.0.0.1:9/crm/{{ contact.user_id | url_encode }}\"\n"
      "      headers: { Content-Type: application/x-www-form-urlencoded }\n"
      "      body: \"total={{ event.properties.total | money }}\"\n");
  ASSERT_TRUE(j) << j.error().ToString();
}

TEST(JourneyDefinition, WaitsAndDates) {
  auto j = ParseJourney(R"(id: x
trigger: { date: 3d before traits.trial_ends_at }
steps:
  - { id: a, wait: "09:30" }
  - { id: b, wait: { until: "08:00", days: [mon, weekends] } }
  - { id: c, wait: { until: "1d after traits.signed_up_at" } }
  - { id: d, wait: { duration: 2h } }
)",
                        "j");
  ASSERT_TRUE(j) << j.error().ToString();
  EXPECT_EQ(j->trigger.kind, TriggerKind::kDate);
  EXPECT_EQ(j->trigger.offset, -3 * 86400000LL);
  EXPECT_EQ(j->trigger.trait, std::vector<std::string>{"trial_ends_at"});
  EXPECT_EQ(j->steps[0].wait.minute_of_day, 9 * 60 + 30);
  EXPECT_EQ(j->steps[1].wait.weekdays, 0x61);
  EXPECT_EQ(j->steps[2].wait.kind, WaitSpec::Kind::kDate);
  EXPECT_EQ(j->steps[2].wait.offset, 86400000);
  EXPECT_EQ(j->steps[3].wait.duration, 2 * 3600000);
  EXPECT_TRUE(CheckJourney(*j, {}).empty());
}

}  // namespace
}  // namespace nudge::journey
