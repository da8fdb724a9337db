// Segments, scores and stages on a virtual clock: events in, time advanced, memberships and
// the events they emit out. Includes a property test against a brute-force recount.
#include "segment/engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "core/time.h"
#include "ingest/parser.h"
#include "profile/applier.h"
#include "profile/import.h"
#include "rules/json_value.h"

namespace nudge::segment {
namespace {

using core::Millis;
using ingest::Endpoint;
using nlohmann::json;

constexpr Millis kMinute = 60000;
constexpr Millis kHour = 60 * kMinute;
constexpr Millis kDay = 24 * kHour;

// Evaluates a condition on a traits document alone, parsed here.
class DocumentEnv final : public rules::TraitsEnv {
 public:
  DocumentEnv(const std::string& traits, Millis now) : TraitsEnv(now) {
    ok_ = parser_.parse(traits).get(doc_) == simdjson::SUCCESS;
  }
  rules::Value Trait(std::span<const std::string> path) const override {
    return ok_ ? rules::Lookup(doc_, path) : rules::Value::Null();
  }

 private:
  simdjson::dom::parser parser_;
  simdjson::dom::element doc_;
  bool ok_ = false;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nudge_engine_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store_ = std::move(*store::OpenSqliteStore({.path = (dir_ / "n.db").string()}));
    ASSERT_TRUE(store_
                    ->WriteSync([&](store::WriteTxn& t) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(ws_, t.InsertWorkspace({0, "w", "a", "b", 0}));
                      return Status::Ok();
                    })
                    .ok());
    Start();
  }
  void TearDown() override {
    Stop();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Start() {
    cache_ = std::make_unique<profile::ContactCache>();
    engine_ = std::make_unique<Engine>(
        *store_, *cache_, clock_, nullptr,
        EngineOptions{
            .contacts_per_chunk = 7, .events_per_chunk = 11, .background_threads = false});
    applier_ = std::make_unique<profile::Applier>(profile::ProfileOptions{}, engine_.get());
    Status s = engine_->Load();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Stop() {
    if (engine_) engine_->Stop();
    applier_.reset();
    engine_.reset();
    cache_.reset();
  }

  void Send(Endpoint e, const json& body) {
    auto parsed = ingest::ParseRequest(e, body.dump(), clock_.NowMillis());
    ASSERT_TRUE(parsed) << parsed.error().ToString();
    Status s = store_->WriteSync([&](store::WriteTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto r, applier_->Apply(t, ws_, parsed->messages));
      (void)r;
      return Status::Ok();
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Track(const std::string& user, const std::string& event, json properties = json::object()) {
    Send(Endpoint::kTrack, {{"userId", user}, {"event", event}, {"properties", properties}});
  }
  void Page(const std::string& user, const std::string& path) {
    Send(Endpoint::kPage, {{"userId", user}, {"properties", {{"path", path}}}});
  }
  void Identify(const std::string& user, json traits) {
    Send(Endpoint::kIdentify, {{"userId", user}, {"traits", traits}});
  }

  // Moves the clock, firing every timer at its due time on the way.
  void Advance(Millis delta) {
    const Millis target = clock_.NowMillis() + delta;
    for (int guard = 0; guard < 100000; ++guard) {
      auto due = engine_->NextDue();
      if (!due || *due > target) break;
      if (*due > clock_.NowMillis()) clock_.Set(*due);
      ASSERT_TRUE(engine_->RunDue().ok());
    }
    clock_.Set(target);
    ASSERT_TRUE(engine_->RunDue().ok());
  }

  void PutSegment(const std::string& yaml) {
    auto def = ParseSegment(yaml, "test");
    ASSERT_TRUE(def) << def.error().ToString();
    auto info = engine_->PutSegment(ws_, std::move(*def));
    ASSERT_TRUE(info) << info.error().ToString();
    engine_->WaitIdle();
  }

  store::ContactId Id(const std::string& user) {
    store::ContactId id = 0;
    EXPECT_TRUE(store_
                    ->Read([&](store::ReadTxn& t) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(auto c, t.FindContactIdByUserId(ws_, user));
                      if (c) id = *c;
                      return Status::Ok();
                    })
                    .ok());
    return id;
  }
  std::vector<std::string> SegmentsOf(const std::string& user) {
    return engine_->View(Id(user)).segments;
  }
  // Every segment's member count equals the number of the workspace's contacts whose view
  // lists it (what GET /api/v1/segments/{id} says against what each contact says).
  void ExpectCountsMatchViews(const std::string& when) {
    std::map<std::string, uint64_t> listed;
    store::ContactId after = 0;
    for (int page = 0; page < 10000; ++page) {
      std::vector<store::Contact> contacts;
      ASSERT_TRUE(store_
                      ->Read([&](store::ReadTxn& t) -> Status {
                        NUDGE_ASSIGN_OR_RETURN(contacts, t.ListContacts(ws_, after, 100));
                        return Status::Ok();
                      })
                      .ok());
      if (contacts.empty()) break;
      for (const auto& c : contacts)
        for (const auto& seg : engine_->View(c.id).segments) ++listed[seg];
      after = contacts.back().id;
    }
    for (const auto& info : engine_->ListSegments(ws_))
      EXPECT_EQ(info.members, listed[info.def.id]) << info.def.id << " " << when;
  }
  // The contact's events with this name, oldest first: (name, properties, timestamp).
  std::vector<store::Event> EventsNamed(const std::string& user, const std::string& name) {
    std::vector<store::Event> out;
    EXPECT_TRUE(store_
                    ->Read([&](store::ReadTxn& t) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(auto all, t.ListEvents(Id(user), 100000));
                      for (auto it = all.rbegin(); it != all.rend(); ++it)
                        if (it->name == name) out.push_back(*it);
                      return Status::Ok();
                    })
                    .ok());
    return out;
  }

  std::filesystem::path dir_;
  core::VirtualClock clock_{*core::ParseIso8601("2026-11-02T09:00:00Z")};
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<profile::ContactCache> cache_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<profile::Applier> applier_;
  store::WorkspaceId ws_ = 0;
};

TEST_F(EngineTest, ThreePricingVisitsInAWeekEnterAndLeaveOnTime) {
  PutSegment(R"(id: pricing-3x
condition: count(event "Page Viewed" where properties.path == "/pricing" within 7d) >= 3)");
  const Millis t0 = clock_.NowMillis();
  Page("ann", "/pricing");
  Advance(1 * kDay);
  Page("ann", "/docs");  // not pricing
  Page("ann", "/pricing");
  EXPECT_TRUE(SegmentsOf("ann").empty());
  Advance(1 * kDay);
  Page("ann", "/pricing");
  EXPECT_EQ(SegmentsOf("ann"), std::vector<std::string>{"pricing-3x"});
  auto entered = EventsNamed("ann", "Segment Entered");
  ASSERT_EQ(entered.size(), 1u);
  EXPECT_EQ(json::parse(entered[0].body)["properties"]["segment"], "pricing-3x");
  EXPECT_EQ(entered[0].timestamp, t0 + 2 * kDay);
  // Its messageId names it, its contact and its cause (the third visit), under the prefix the
  // store does not check for duplicates; the body carries the same id.
  const std::string third_visit = std::to_string(EventsNamed("ann", "Page Viewed").back().id);
  EXPECT_EQ(entered[0].message_id, std::string(store::kUncheckedDerivedPrefix) +
                                       "Segment Entered:pricing-3x:" + std::to_string(Id("ann")) +
                                       ":" + third_visit);
  EXPECT_EQ(json::parse(entered[0].body)["messageId"], entered[0].message_id);

  // The first visit turns seven days old at t0 + 7d: the contact leaves then, not later.
  Advance(5 * kDay - kMinute);
  EXPECT_EQ(SegmentsOf("ann"), std::vector<std::string>{"pricing-3x"});
  Advance(kMinute);
  EXPECT_TRUE(SegmentsOf("ann").empty());
  auto exited = EventsNamed("ann", "Segment Exited");
  ASSERT_EQ(exited.size(), 1u);
  EXPECT_EQ(exited[0].timestamp, t0 + 7 * kDay);
  EXPECT_EQ(engine_->GetSegment(ws_, "pricing-3x")->members, 0u);
}

TEST_F(EngineTest, ANewSegmentCountsTheHistoryWithoutEmitting) {
  Page("bo", "/pricing");
  Page("bo", "/pricing");
  Page("bo", "/pricing");
  Page("cy", "/pricing");
  Identify("cy", {{"plan", "trial"}});
  PutSegment(R"(id: pricing-3x
condition: count(event "Page Viewed" where properties.path == "/pricing" within 7d) >= 3)");
  PutSegment("{\"id\": \"trials\", \"condition\": \"traits.plan == \\\"trial\\\"\"}");
  EXPECT_EQ(SegmentsOf("bo"), std::vector<std::string>{"pricing-3x"});
  EXPECT_EQ(SegmentsOf("cy"), std::vector<std::string>{"trials"});
  EXPECT_EQ(engine_->GetSegment(ws_, "pricing-3x")->members, 1u);
  EXPECT_EQ(engine_->GetSegment(ws_, "pricing-3x")->status, "ready");
  EXPECT_TRUE(EventsNamed("bo", "Segment Entered").empty());  // the backfill is silent
  // Live changes after that are events.
  Identify("bo", {{"plan", "trial"}});
  EXPECT_EQ(EventsNamed("bo", "Segment Entered").size(), 1u);
}

TEST_F(EngineTest, SegmentsOfSegmentsAndRefusedReferences) {
  PutSegment("{id: vip, condition: 'traits.tier == \"vip\"'}");
  PutSegment("{id: vip-buyers, condition: 'in segment \"vip\" and event \"Order Completed\"'}");
  Identify("di", {{"tier", "vip"}});
  EXPECT_EQ(SegmentsOf("di"), std::vector<std::string>{"vip"});
  Track("di", "Order Completed", {{"revenue", 10}});
  EXPECT_EQ(SegmentsOf("di"), (std::vector<std::string>{"vip", "vip-buyers"}));

  auto unknown =
      engine_->PutSegment(ws_, *ParseSegment("{id: x, condition: 'in segment \"nope\"'}", "t"));
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("unknown segment"), std::string::npos);
  // At the condition's position in its document.
  EXPECT_EQ(unknown.error().where(), "t:1:20") << unknown.error().ToString();
  auto self = engine_->PutSegment(
      ws_, *ParseSegment("id: y\ncondition: in segment \"y\"\n", "segments/y.yaml"));
  ASSERT_FALSE(self);
  EXPECT_EQ(self.error().ToString(),
            "segments/y.yaml:2:12: condition: a segment cannot refer to itself");
  // vip -> vip-buyers -> vip would be a cycle.
  auto cycle = engine_->PutSegment(
      ws_, *ParseSegment("{id: vip, condition: 'in segment \"vip-buyers\"'}", "t"));
  ASSERT_FALSE(cycle);
  EXPECT_NE(cycle.error().message().find("through other segments"), std::string::npos);
  EXPECT_FALSE(engine_->DeleteSegment(ws_, "vip").ok());  // vip-buyers uses it
  EXPECT_TRUE(engine_->DeleteSegment(ws_, "vip-buyers").ok());
  EXPECT_TRUE(engine_->DeleteSegment(ws_, "vip").ok());
  EXPECT_TRUE(SegmentsOf("di").empty());
}

// Stages and scoring rules name only segments that exist, and a segment they name cannot be
// deleted, as with segments and journeys.
TEST_F(EngineTest, StagesAndScoringNameOnlySegmentsThatExist) {
  const char* stages = R"(stages:
  - { name: Awareness, when: "true" }
  - name: Decision
    when: in segment "buyers"
)";
  Status s = engine_->PutStages(ws_, *ParseStages(stages, "stages.yaml"));
  EXPECT_EQ(s.ToString(), "stages.yaml:4:11: when: refers to the unknown segment \"buyers\"");
  auto scoring = ParseScoring(
      "rules:\n  - { id: fans, condition: 'in segment \"fans\"', points: 5 }\n", "scoring.yaml");
  ASSERT_TRUE(scoring) << scoring.error().ToString();
  s = engine_->PutScoring(ws_, *scoring);
  EXPECT_NE(s.ToString().find("rules.fans.condition: refers to the unknown segment \"fans\""),
            std::string::npos)
      << s.ToString();

  ASSERT_TRUE(
      engine_->PutSegment(ws_, *ParseSegment("{id: buyers, condition: 'event \"Paid\"'}", "t")));
  ASSERT_TRUE(
      engine_->PutSegment(ws_, *ParseSegment("{id: fans, condition: 'event \"Liked\"'}", "t")));
  ASSERT_TRUE(engine_->PutStages(ws_, *ParseStages(stages, "stages.yaml")).ok());
  ASSERT_TRUE(engine_->PutScoring(ws_, *scoring).ok());
  Track("ed", "Paid", {});
  EXPECT_EQ(engine_->View(Id("ed")).stage, "Decision");
  s = engine_->DeleteSegment(ws_, "buyers");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("stage 'Decision'"), std::string::npos) << s.ToString();
  s = engine_->DeleteSegment(ws_, "fans");
  EXPECT_NE(s.message().find("scoring rule 'fans'"), std::string::npos) << s.ToString();
}

TEST_F(EngineTest, LeadScoresCapDecayAndQualify) {
  auto scoring = ParseScoring(R"(
rules:
  - id: pricing
    event: Page Viewed
    where: properties.path == "/pricing"
    points: 10
    cap: { points: 20, per: 7d }
  - id: demo
    event: Demo Requested
    points: 40
  - id: big
    condition: traits.employees >= 500
    points: 15
decay: { expire_after: 30d }
thresholds: { mql: 50, sql: 80 }
)",
                              "scoring.yaml");
  ASSERT_TRUE(scoring) << scoring.error().ToString();
  ASSERT_TRUE(engine_->PutScoring(ws_, *scoring).ok());
  PutSegment("{id: hot, condition: 'score >= 50'}");
  for (int i = 0; i < 4; ++i) Page("ed", "/pricing");  // capped at 20
  EXPECT_EQ(engine_->View(Id("ed")).score.score, 20);
  Identify("ed", {{"employees", 900}});
  EXPECT_EQ(engine_->View(Id("ed")).score.score, 35);
  Track("ed", "Demo Requested");
  ContactView v = engine_->View(Id("ed"));
  EXPECT_EQ(v.score.score, 75);
  EXPECT_EQ(v.score.qualification, "MQL");
  EXPECT_EQ(v.segments, std::vector<std::string>{"hot"});
  ASSERT_EQ(EventsNamed("ed", "Lead Qualified").size(), 1u);
  // Points expire after 30 days: the score falls, the contact leaves "hot" on time.
  Advance(30 * kDay + kMinute);
  EXPECT_EQ(engine_->View(Id("ed")).score.score, 15);
  EXPECT_TRUE(engine_->View(Id("ed")).segments.empty());
  EXPECT_EQ(EventsNamed("ed", "Segment Exited").size(), 1u);
}

// After an event only the segments that read something it changed are evaluated: what it
// feeds, what reads last_seen, and what names a segment that moved. None of them may be missed,
// and the timers of the segments left alone must still fire.
TEST_F(EngineTest, AnEventReachesWhatReadsItAndWhatDependsOnThat) {
  PutSegment(R"(id: pricing
condition: event "Page Viewed" where properties.path == "/pricing" within 2d)");
  PutSegment(R"(id: warm
condition: in segment "pricing" and traits.plan == "trial")");
  PutSegment(R"(id: recent
condition: last_seen > now - 1d)");
  PutSegment(R"(id: buyers
condition: event "Order Completed")");
  using V = std::vector<std::string>;
  Identify("ivy", {{"plan", "trial"}});
  EXPECT_EQ(SegmentsOf("ivy"), V{"recent"});
  Page("ivy", "/pricing");  // pricing, and warm through it
  EXPECT_EQ(SegmentsOf("ivy"), (V{"pricing", "recent", "warm"}));
  Advance(kDay + kHour);  // not seen for a day
  EXPECT_EQ(SegmentsOf("ivy"), (V{"pricing", "warm"}));
  Track("ivy", "Order Completed");  // feeds buyers; last_seen moves: recent again
  EXPECT_EQ(SegmentsOf("ivy"), (V{"buyers", "pricing", "recent", "warm"}));
  Advance(kDay);  // the pricing visit is 2 days old, the order a day old
  EXPECT_EQ(SegmentsOf("ivy"), V{"buyers"});
  EXPECT_EQ(EventsNamed("ivy", "Segment Exited").size(), 4u);
}

TEST_F(EngineTest, HalfLifeDecayCrossesThresholdsByTimer) {
  auto scoring = ParseScoring(R"(
rules: [{ id: visit, event: Page Viewed, points: 100 }]
decay: { half_life: 10d }
)",
                              "s");
  ASSERT_TRUE(scoring) << scoring.error().ToString();
  ASSERT_TRUE(engine_->PutScoring(ws_, *scoring).ok());
  PutSegment("{id: warm, condition: 'score >= 50'}");
  Page("fay", "/");
  EXPECT_EQ(SegmentsOf("fay"), std::vector<std::string>{"warm"});
  Advance(10 * kDay - kHour);
  EXPECT_EQ(SegmentsOf("fay"), std::vector<std::string>{"warm"});
  Advance(2 * kHour);  // 100 halves to 50 at 10 days and keeps falling
  EXPECT_TRUE(SegmentsOf("fay").empty());
}

TEST_F(EngineTest, StagesMoveForwardAndKeepHistory) {
  Identify("gus", {{"email", "gus@example.com"}});
  EXPECT_EQ(engine_->View(Id("gus")).stage, "Awareness");
  Page("gus", "/pricing");
  EXPECT_EQ(engine_->View(Id("gus")).stage, "Consideration");
  Track("gus", "Order Completed", {{"revenue", 10}});
  EXPECT_EQ(engine_->View(Id("gus")).stage, "Retention");
  auto changed = EventsNamed("gus", "Stage Changed");
  ASSERT_EQ(changed.size(), 3u);
  EXPECT_EQ(json::parse(changed[2].body)["properties"]["previous"], "Consideration");
  auto counts = engine_->StageCounts(ws_);
  EXPECT_EQ(counts[3], (std::pair<std::string, uint64_t>{"Retention", 1}));
  std::vector<store::StageEntry> history;
  ASSERT_TRUE(store_
                  ->Read([&](store::ReadTxn& t) -> Status {
                    NUDGE_ASSIGN_OR_RETURN(history, t.StageHistory(Id("gus")));
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(history.size(), 3u);

  auto custom = ParseStages(R"(
stages:
  - { name: Lead, when: "true" }
  - { name: Customer, when: 'event "Order Completed"' }
)",
                            "stages.yaml");
  ASSERT_TRUE(custom) << custom.error().ToString();
  ASSERT_TRUE(engine_->PutStages(ws_, *custom).ok());
  EXPECT_EQ(engine_->View(Id("gus")).stage, "Customer");
}

TEST_F(EngineTest, StateSurvivesARestartWithoutSpuriousEvents) {
  PutSegment(R"(id: pricing-2x
condition: count(event "Page Viewed" where properties.path == "/pricing" within 3d) >= 2)");
  Page("hal", "/pricing");
  Page("hal", "/pricing");
  EXPECT_EQ(SegmentsOf("hal"), std::vector<std::string>{"pricing-2x"});
  Stop();
  Start();
  EXPECT_EQ(SegmentsOf("hal"), std::vector<std::string>{"pricing-2x"});
  EXPECT_EQ(EventsNamed("hal", "Segment Entered").size(), 1u);
  // Time passes while nudge is down: the window slides out; the exit happens at start.
  Stop();
  clock_.Advance(4 * kDay);
  Start();
  EXPECT_TRUE(SegmentsOf("hal").empty());
  EXPECT_EQ(EventsNamed("hal", "Segment Exited").size(), 1u);
}

// Segments on how contacts came in: the tags and source an import gave them, kept across a
// restart, and left when a tag is taken away.
TEST_F(EngineTest, TagsAndSourceFromAnImportAreSegmentedOn) {
  PutSegment("{id: q4, condition: 'tags contains \"q4\"'}");
  PutSegment("{id: from-webinar, condition: 'source == \"webinar\"'}");
  Identify("ann", {{"email", "ann@example.com"}});
  Identify("bob", {{"email", "bob@example.com"}});
  EXPECT_TRUE(SegmentsOf("ann").empty());
  auto row = [](int line, std::string email) {
    profile::ImportRow r;
    r.line = line;
    r.email = std::move(email);
    return r;
  };
  ASSERT_TRUE(store_
                  ->WriteSync([&](store::WriteTxn& t) -> Status {
                    NUDGE_ASSIGN_OR_RETURN(
                        auto results,
                        profile::ImportContacts(
                            t, ws_,
                            {"imp-1",
                             "webinar",
                             {"q4"},
                             {row(2, "ann@example.com"), row(3, "cy@example.com")}},
                            profile::ProfileOptions{}, clock_.NowMillis(), engine_.get()));
                    (void)results;
                    return Status::Ok();
                  })
                  .ok());
  // ann had no source: the import's is hers now.
  EXPECT_EQ(SegmentsOf("ann"), (std::vector<std::string>{"from-webinar", "q4"}));
  EXPECT_TRUE(SegmentsOf("bob").empty());
  ExpectCountsMatchViews("after the import");
  const auto q4 = [&] {
    for (const auto& info : engine_->ListSegments(ws_))
      if (info.def.id == "q4") return info.members;
    return uint64_t{0};
  };
  EXPECT_EQ(q4(), 2u) << "ann and the new contact";
  Stop();
  Start();
  EXPECT_EQ(SegmentsOf("ann"), (std::vector<std::string>{"from-webinar", "q4"}));
  EXPECT_EQ(q4(), 2u);
  // The tag taken away: ann leaves.
  ASSERT_TRUE(store_
                  ->WriteSync([&](store::WriteTxn& t) -> Status {
                    NUDGE_ASSIGN_OR_RETURN(auto c, t.GetContact(Id("ann")));
                    c->tags = "[]";
                    NUDGE_TRY(t.UpdateContact(*c));
                    return engine_->OnContactChanged(t, *c, c->traits);
                  })
                  .ok());
  EXPECT_EQ(SegmentsOf("ann"), (std::vector<std::string>{"from-webinar"}));
  EXPECT_EQ(EventsNamed("ann", "Segment Exited").size(), 1u);
}

TEST_F(EngineTest, MergedVisitorsBringTheirBehaviour) {
  PutSegment(R"(id: pricing-2x
condition: count(event "Page Viewed" where properties.path == "/pricing" within 3d) >= 2)");
  Send(Endpoint::kPage, {{"anonymousId", "v-1"}, {"properties", {{"path", "/pricing"}}}});
  Page("ivy", "/pricing");
  EXPECT_TRUE(SegmentsOf("ivy").empty());
  Send(Endpoint::kIdentify, {{"userId", "ivy"}, {"anonymousId", "v-1"}});
  EXPECT_EQ(SegmentsOf("ivy"), std::vector<std::string>{"pricing-2x"});
}

TEST_F(EngineTest, MergedCountsAreNotDoubled) {
  PutSegment(R"(id: p3
condition: count(event "Page Viewed" where properties.path == "/pricing" within 7d) >= 3)");
  Page("zed", "/pricing");
  Advance(2 * kDay);
  Send(Endpoint::kPage, {{"anonymousId", "v-9"}, {"properties", {{"path", "/pricing"}}}});
  Send(Endpoint::kIdentify, {{"userId", "zed"}, {"anonymousId", "v-9"}});
  EXPECT_TRUE(SegmentsOf("zed").empty());
  Page("zed", "/pricing");
  EXPECT_EQ(SegmentsOf("zed"), std::vector<std::string>{"p3"});
}

TEST_F(EngineTest, PreviewCountsWithoutSaving) {
  Page("jo", "/pricing");
  Page("jo", "/pricing");
  Page("kim", "/pricing");
  auto p = engine_->PreviewCondition(
      ws_, R"(count(event "Page Viewed" where properties.path == "/pricing" within 7d) >= 2)", 10);
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_EQ(p->count, 1u);
  ASSERT_EQ(p->sample.size(), 1u);
  EXPECT_EQ(p->sample[0], Id("jo"));
  EXPECT_TRUE(engine_->ListSegments(ws_).empty());
  EXPECT_FALSE(engine_->PreviewCondition(ws_, "traits.x ==", 10));
}

// Redefining or deleting a segment hands its place to the next definition: members of the
// old one are not taken for members of the new one.
TEST_F(EngineTest, RedefinedAndDeletedSegmentsStartFromNoMembers) {
  PutSegment("id: s\ncondition: traits.plan == \"pro\"");
  Identify("una", {{"plan", "pro"}, {"country", "DE"}});
  Identify("val", {{"plan", "pro"}, {"country", "FR"}});
  EXPECT_EQ(SegmentsOf("una"), std::vector<std::string>{"s"});
  EXPECT_EQ(SegmentsOf("val"), std::vector<std::string>{"s"});

  PutSegment("id: s\ncondition: traits.plan == \"pro\" and traits.country == \"DE\"");
  EXPECT_EQ(SegmentsOf("una"), std::vector<std::string>{"s"});
  EXPECT_TRUE(SegmentsOf("val").empty());
  auto info = engine_->GetSegment(ws_, "s");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->members, 1u);

  ASSERT_TRUE(engine_->DeleteSegment(ws_, "s").ok());
  PutSegment("id: t\ncondition: traits.country == \"DE\" or traits.country == \"FR\"");
  PutSegment("id: u\ncondition: traits.country == \"FR\"");
  EXPECT_EQ(SegmentsOf("una"), std::vector<std::string>{"t"});
  EXPECT_EQ(SegmentsOf("val"), (std::vector<std::string>{"t", "u"}));
  Identify("val", {{"country", "DE"}});
  EXPECT_EQ(SegmentsOf("val"), std::vector<std::string>{"t"});
  Stop();
  Start();
  EXPECT_EQ(SegmentsOf("una"), std::vector<std::string>{"t"});
  EXPECT_EQ(SegmentsOf("val"), std::vector<std::string>{"t"});
  Identify("una", {{"country", "FR"}});
  EXPECT_EQ(SegmentsOf("una"), (std::vector<std::string>{"t", "u"}));
}

// A condition on traits alone is previewed from the trait columns. Over random traits (missing,
// null, numbers, numeric strings, booleans, nested objects, arrays that make a path unusable
// as a column), trait changes, merges, erasures and a restart, it must count and sample
// exactly what evaluating each contact gives.
TEST_F(EngineTest, TraitPreviewFromColumnsEqualsEvaluatingEachContact) {
  // Saved segments make their paths columns: plan, country, employees, vip, address.city, tags.
  PutSegment(R"(id: t1
condition: traits.plan == "pro" and traits.country in ["DE", "FR"])");
  PutSegment(R"(id: t2
condition: traits.employees >= 50 or traits.vip == true)");
  PutSegment(R"(id: t3
condition: traits.address.city starts_with "Ber" or traits.tags contains "beta")");

  std::mt19937 rng(777);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto random_traits = [&]() {
    json t = json::object();
    const json plans[] = {"pro", "trial", "free", nullptr, 3, "3", true};
    const json countries[] = {"DE", "FR", "US", "de", nullptr, 49};
    const json employees[] = {10, 50, 49.5, 500, "500", nullptr, -0.0, 0};
    if (pick(5)) t["plan"] = plans[pick(7)];
    if (pick(4)) t["country"] = countries[pick(6)];
    if (pick(3)) t["employees"] = employees[pick(8)];
    if (pick(3)) t["vip"] = pick(3) == 0 ? json(true) : pick(2) ? json(false) : json("true");
    if (pick(2)) t["address"] = {{"city", pick(2) ? "Berlin" : "Paris"}};
    if (pick(8) == 0) t["tags"] = json::array({"beta", "x"});
    return t;
  };
  std::vector<std::string> users;
  for (int i = 0; i < 120; ++i) {
    users.push_back("c" + std::to_string(i));
    Identify(users.back(), random_traits());
  }

  const std::vector<std::string> conditions = {
      R"(traits.plan == "pro")",
      R"(traits.plan == "pro" and traits.country in ["DE", "FR"])",
      R"(not (traits.plan == "pro") and traits.country != "US")",
      R"(traits.employees >= 50)",
      R"(traits.employees == 0 or traits.employees < 49.9)",
      R"(traits.plan in ["trial", "free"] or traits.vip == true)",
      R"(traits.country exists and not (traits.vip == false))",
      R"(traits.address.city starts_with "Ber")",
      R"(traits.plan == "3" or traits.plan == 3)",
  };
  // The oracle: each stored contact's traits document, parsed, the condition evaluated on it.
  auto expected = [&](const std::string& text) {
    auto condition = rules::Condition::Compile(text);
    EXPECT_TRUE(condition);
    std::vector<store::ContactId> ids;
    EXPECT_TRUE(store_
                    ->Read([&](store::ReadTxn& t) -> Status {
                      return t.ScanContacts([&](const store::Contact& c) -> Status {
                        if (c.workspace != ws_) return Status::Ok();
                        DocumentEnv env(c.traits, clock_.NowMillis());
                        if ((*condition)->Matches(env)) ids.push_back(c.id);
                        return Status::Ok();
                      });
                    })
                    .ok());
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  auto check = [&](const std::string& when) {
    for (const auto& c : conditions) {
      const auto want = expected(c);
      auto fast = engine_->PreviewCondition(ws_, c, 1000);
      // `score` is always a number: the same condition, evaluated contact by contact.
      auto slow = engine_->PreviewCondition(ws_, "(" + c + ") and (score >= 0 or score < 0)", 1000);
      ASSERT_TRUE(fast && slow) << c;
      EXPECT_TRUE(fast->from_columns) << c;
      EXPECT_FALSE(slow->from_columns) << c;
      EXPECT_EQ(fast->sample, want) << when << ": " << c;
      EXPECT_EQ(fast->count, want.size()) << when << ": " << c;
      EXPECT_EQ(slow->sample, want) << when << ": " << c;
    }
  };
  check("after the first identify calls");

  for (int step = 0; step < 150; ++step) {
    const std::string& user = users[static_cast<size_t>(pick(static_cast<int>(users.size())))];
    switch (pick(4)) {
      case 0:
      case 1:
        Identify(user, random_traits());  // merged into the existing traits; null removes
        break;
      case 2: {
        const std::string anon = "anon-" + std::to_string(step);
        Send(Endpoint::kIdentify, {{"anonymousId", anon}, {"traits", random_traits()}});
        if (pick(2)) Send(Endpoint::kIdentify, {{"userId", user}, {"anonymousId", anon}});
        break;
      }
      default: {
        const store::ContactId id = Id(user);
        if (!id) break;
        ASSERT_TRUE(store_
                        ->WriteSync([&](store::WriteTxn& t) -> Status {
                          NUDGE_TRY(t.DeleteContact(id));
                          return engine_->OnContactDeleted(t, id);
                        })
                        .ok());
        break;
      }
    }
  }
  check("after changes, merges and erasures");
  Stop();
  Start();
  check("after a restart");

  // A path holding an array somewhere is not a column: its previews evaluate each contact.
  auto tags = engine_->PreviewCondition(ws_, R"(traits.tags contains "beta")", 10);
  ASSERT_TRUE(tags);
  EXPECT_FALSE(tags->from_columns);
}

// A random stream of events, trait changes, merges and clock advances; after each step the
// incrementally kept memberships must equal a brute-force recount over the stored events.
TEST_F(EngineTest, IncrementalMembershipEqualsABruteForceRecount) {
  PutSegment(R"(id: s1
condition: count(event "Page Viewed" where properties.path == "/pricing" within 7d) >= 3)");
  PutSegment(R"(id: s2
condition: traits.plan == "pro" and sum(properties.revenue of event "Order Completed" within 30d) > 100)");
  PutSegment(R"(id: s3
condition: in segment "s1" or event "Order Completed" where properties.revenue >= 50 within 2d)");
  PutSegment(R"(id: s4
condition: not event "Page Viewed" within 1d)");

  std::mt19937 rng(12345);
  const std::vector<std::string> users = {"u0", "u1", "u2", "u3", "u4", "u5"};
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };

  auto brute = [&](const std::string& user) {
    std::set<std::string> out;
    const store::ContactId id = Id(user);
    if (!id) return out;
    std::vector<store::Event> events;
    std::optional<store::Contact> contact;
    EXPECT_TRUE(store_
                    ->Read([&](store::ReadTxn& t) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(events, t.ListEvents(id, 1000000));
                      NUDGE_ASSIGN_OR_RETURN(contact, t.GetContact(id));
                      return Status::Ok();
                    })
                    .ok());
    const Millis now = clock_.NowMillis();
    int pricing7 = 0, views1 = 0, big2 = 0;
    double revenue30 = 0;
    for (const auto& e : events) {
      const json p = json::parse(e.body).value("properties", json::object());
      const Millis age = now - e.timestamp;
      if (e.name == "Page Viewed") {
        if (p.value("path", "") == "/pricing" && age < 7 * kDay) ++pricing7;
        if (age < kDay) ++views1;
      }
      if (e.name == "Order Completed") {
        const double r = p.value("revenue", 0.0);
        if (age < 30 * kDay) revenue30 += r;
        if (r >= 50 && age < 2 * kDay) ++big2;
      }
    }
    const json traits = json::parse(contact->traits);
    if (pricing7 >= 3) out.insert("s1");
    if (traits.value("plan", "") == "pro" && revenue30 > 100) out.insert("s2");
    if (pricing7 >= 3 || big2 > 0) out.insert("s3");
    if (views1 == 0) out.insert("s4");
    return out;
  };

  for (int step = 0; step < 400; ++step) {
    const std::string& user = users[static_cast<size_t>(pick(static_cast<int>(users.size())))];
    switch (pick(8)) {
      case 0:
      case 1:
      case 2:
        Page(user, pick(3) ? "/pricing" : "/docs");
        break;
      case 3:
        Track(user, "Order Completed", {{"revenue", 10 * pick(12)}});
        break;
      case 4:
        Identify(user, {{"plan", pick(2) ? "pro" : "free"}});
        break;
      case 5: {
        // An anonymous visitor browses, then turns out to be this user.
        const std::string anon = "anon-" + std::to_string(step);
        Send(Endpoint::kPage, {{"anonymousId", anon}, {"properties", {{"path", "/pricing"}}}});
        if (pick(2)) Send(Endpoint::kIdentify, {{"userId", user}, {"anonymousId", anon}});
        break;
      }
      default:
        Advance(static_cast<Millis>(pick(4)) * kDay + static_cast<Millis>(pick(24)) * kHour);
        break;
    }
    for (const auto& u : users) {
      if (!Id(u)) continue;
      const auto got = SegmentsOf(u);
      const std::set<std::string> have(got.begin(), got.end());
      ASSERT_EQ(have, brute(u)) << "step " << step << ", contact " << u << " at "
                                << core::FormatIso8601(clock_.NowMillis());
    }
    if (step % 25 == 0) ExpectCountsMatchViews("at step " + std::to_string(step));
  }
  // And a restart recomputes the same.
  std::map<std::string, std::vector<std::string>> before;
  for (const auto& u : users) before[u] = SegmentsOf(u);
  Stop();
  Start();
  for (const auto& u : users) EXPECT_EQ(SegmentsOf(u), before[u]) << u;
  ExpectCountsMatchViews("after a restart");
}

// Deleting a segment moves the ones after it: events must still reach them.
TEST_F(EngineTest, SegmentsAfterADeletedOneStillFollowEvents) {
  PutSegment("id: first\ncondition: traits.plan == \"pro\"");
  PutSegment("id: viewed\ncondition: event \"Page Viewed\" within 1d");
  PutSegment(R"(id: bought
condition: count(event "Order Completed" within 7d) >= 2)");
  ASSERT_TRUE(engine_->DeleteSegment(ws_, "first").ok());
  Page("ann", "/pricing");
  EXPECT_EQ(SegmentsOf("ann"), std::vector<std::string>{"viewed"});
  Track("ann", "Order Completed");
  Track("ann", "Order Completed");
  EXPECT_EQ(SegmentsOf("ann"), (std::vector<std::string>{"bought", "viewed"}));
  ASSERT_TRUE(engine_->DeleteSegment(ws_, "viewed").ok());
  Advance(8 * kDay);
  EXPECT_TRUE(SegmentsOf("ann").empty());
  Track("ann", "Order Completed");
  Track("ann", "Order Completed");
  EXPECT_EQ(SegmentsOf("ann"), std::vector<std::string>{"bought"});
  ExpectCountsMatchViews("after deletions");
}

// A workspace keeps the membership of its first 64 segments as bits of each contact's state
// and the rest in bitmaps: both give the same members and counts through changes, merges,
// erasures, redefinitions and a restart.
TEST_F(EngineTest, SegmentsBeyondSixtyFourKeepMembersAndCounts) {
  constexpr int kSegments = 70;
  for (int k = 0; k < kSegments; ++k)
    PutSegment("id: n" + std::to_string(k) + "\ncondition: traits.n >= " + std::to_string(k));
  auto expect = [&](const std::string& user, int n, const std::string& when) {
    std::vector<std::string> want;
    for (int k = 0; k <= n && k < kSegments; ++k) want.push_back("n" + std::to_string(k));
    std::sort(want.begin(), want.end());
    EXPECT_EQ(SegmentsOf(user), want) << user << " " << when;
  };
  auto count = [&](int k) { return engine_->GetSegment(ws_, "n" + std::to_string(k))->members; };
  Identify("a", {{"n", 69}});
  Identify("b", {{"n", 66}});
  Identify("c", {{"n", 3}});
  expect("a", 69, "at first");
  expect("b", 66, "at first");
  EXPECT_EQ(count(0), 3u);
  EXPECT_EQ(count(66), 2u);
  EXPECT_EQ(count(69), 1u);
  ExpectCountsMatchViews("at first");

  // A visitor with n = 68 identifies as c, saying n = 67: one contact left, with n = 67.
  Send(Endpoint::kIdentify, {{"anonymousId", "v"}, {"traits", {{"n", 68}}}});
  EXPECT_EQ(count(68), 2u);
  Send(Endpoint::kIdentify, {{"userId", "c"}, {"anonymousId", "v"}, {"traits", {{"n", 67}}}});
  expect("c", 67, "after the merge");
  EXPECT_EQ(count(68), 1u);
  EXPECT_EQ(count(67), 2u);
  ExpectCountsMatchViews("after the merge");

  Identify("a", {{"n", 1}});
  expect("a", 1, "after a change");
  EXPECT_EQ(count(69), 0u);
  const store::ContactId b = Id("b");
  ASSERT_TRUE(store_
                  ->WriteSync([&](store::WriteTxn& t) -> Status {
                    NUDGE_TRY(t.DeleteContact(b));
                    return engine_->OnContactDeleted(t, b);
                  })
                  .ok());
  EXPECT_EQ(count(66), 1u);
  EXPECT_EQ(count(0), 2u);
  ExpectCountsMatchViews("after an erasure");

  // Redefined: one segment kept as bits, one in a bitmap.
  PutSegment("id: n2\ncondition: traits.n >= 50");
  PutSegment("id: n67\ncondition: traits.n >= 1");
  EXPECT_EQ(count(2), 1u);
  EXPECT_EQ(count(67), 2u);
  ExpectCountsMatchViews("after redefinitions");
  Stop();
  Start();
  EXPECT_EQ(count(2), 1u);
  EXPECT_EQ(count(67), 2u);
  EXPECT_EQ(count(0), 2u);
  ExpectCountsMatchViews("after a restart");
}

}  // namespace
}  // namespace nudge::segment
