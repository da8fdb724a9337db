#include "segment/definitions.h"

#include <gtest/gtest.h>

namespace nudge::segment {
namespace {

TEST(Definitions, SegmentFromYamlAndJson) {
  auto s = ParseSegment(R"(id: engaged
name: Engaged
description: Looked at pricing three times in a week
condition: |
  count(event "Page Viewed" where properties.path == "/pricing" within 7d) >= 3
)",
                        "segments/engaged.yaml");
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->id, "engaged");
  EXPECT_EQ(s->condition->aggregates().size(), 1u);
  auto j = ParseSegment(ToJson(*s), "stored");
  ASSERT_TRUE(j) << j.error().ToString();
  EXPECT_EQ(j->condition_text, s->condition_text);
  EXPECT_TRUE(ParseSegment(R"({"condition": "traits.a == 1"})", "body", std::string_view("x")));
}

TEST(Definitions, ConditionErrorsPointIntoTheFile) {
  auto s = ParseSegment("id: bad\ncondition: traits.plan = \"x\"\n", "segments/bad.yaml");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().where(), "segments/bad.yaml:2:24") << s.error().ToString();
  s = ParseSegment(
      "id: bad\ncondition: |\n  traits.plan == \"x\" and\n  properties.path == \"/\"\n",
      "segments/bad.yaml");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().where(), "segments/bad.yaml:4:3") << s.error().ToString();
  s = ParseSegment("id: bad\ncondition: \"traits.plan ==\"\n", "f.yaml");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().where().substr(0, 8), "f.yaml:2") << s.error().ToString();
}

TEST(Definitions, StructuralErrorsAreNamed) {
  EXPECT_NE(ParseSegment("id: x\ncondition: traits.a == 1\ncolour: red\n", "f")
                .error()
                .message()
                .find("unknown key"),
            std::string::npos);
  EXPECT_EQ(ParseSegment("id: Bad Id\ncondition: traits.a == 1\n", "f").error().where(), "f:1:5");
  EXPECT_FALSE(ParseSegment("id: x\n", "f"));
  EXPECT_FALSE(ParseSegment("id: x\ncondition: [1, 2\n", "f"));
  EXPECT_FALSE(ParseSegment("id: x\nid: y\ncondition: traits.a == 1\n", "f"));
  EXPECT_FALSE(ParseSegment("{\"id\": \"x\", \"condition\": \"traits.a == 1\"}", "f",
                            std::string_view("y")));
  EXPECT_FALSE(ParseScoring("rules:\n  - id: a\n    points: 1\n", "scoring.yaml"));  // neither kind
  EXPECT_FALSE(ParseScoring("rules:\n  - {id: a, points: 1, event: X, condition: 'true'}\n", "s"));
  EXPECT_FALSE(ParseScoring("decay: {half_life: 7d, expire_after: 9d}\n", "s"));
  EXPECT_FALSE(ParseScoring("thresholds: {mql: 50, sql: 10}\n", "s"));
  EXPECT_FALSE(ParseStages("stages: []\n", "s"));
  EXPECT_FALSE(
      ParseStages("stages:\n  - {name: A, when: 'true'}\n  - {name: A, when: 'true'}\n", "s"));
}

TEST(Definitions, ScoringAndStagesRoundTrip) {
  auto s = ParseScoring(R"(rules:
  - { id: pricing, event: Page Viewed, where: 'properties.path == "/pricing"', points: 10, cap: { points: 30, per: 7d } }
  - { id: big, condition: 'traits.employees >= 500', points: 20 }
decay: { half_life: 30d }
thresholds: { mql: 50, sql: 100 }
)",
                        "scoring.yaml");
  ASSERT_TRUE(s) << s.error().ToString();
  auto again = ParseScoring(ToJson(*s), "stored");
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(ToJson(*again), ToJson(*s));
  EXPECT_EQ(again->decay, ScoringDef::Decay::kHalfLife);
  EXPECT_EQ(*again->rules[0].cap_points, 30);
  auto stages = ParseStages(ToJson(DefaultStages()), "stored");
  ASSERT_TRUE(stages) << stages.error().ToString();
  ASSERT_EQ(stages->stages.size(), 5u);
  EXPECT_EQ(stages->stages[0].name, "Awareness");
  EXPECT_EQ(stages->stages[4].name, "Advocacy");
}

}  // namespace
}  // namespace nudge::segment
