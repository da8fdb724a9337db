// A write that rolls back leaves the journey engine's memory (active instances, timers) and
// the segment engine's (contacts, memberships) as the store has them: the instance it started
// does not wait in memory only, the one it ended moves on, and the writes before it in its
// group are kept in memory as in the store.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "core/time.h"
#include "journey/sandbox.h"

namespace nudge::journey {
namespace {

constexpr const char* kJourney = R"(
id: follow
trigger: { event: Viewed }
exit_when: event "Done"
steps:
  - { id: pause, wait: 1h }
  - { id: mark, update: { set: { followed: true } } }
)";

constexpr const char* kSegment = R"(
id: pros
name: Pro plan
condition: traits.plan == "pro"
)";

class RollbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto box = Sandbox::Create(*core::ParseIso8601("2026-11-02T09:00:00Z"));
    ASSERT_TRUE(box) << box.error().ToString();
    box_ = std::move(*box);
    Status s = box_->PutSegment(kSegment, "segments/pros.yaml");
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = box_->PutJourney(kJourney, "journeys/follow.yaml");
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // The write that applies `message` (one or more messages), then ends with `outcome`: a
  // failure is as one whose disk write failed.
  store::Store::WriteFn Applying(const std::string& message, Status outcome = Status::Ok()) {
    auto parsed = box_->Parse(message);
    EXPECT_TRUE(parsed) << parsed.error().ToString();
    return [this, outcome, messages = parsed.value_or(std::vector<ingest::Message>{})](
               store::WriteTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto r, box_->applier().Apply(t, box_->workspace(), messages));
      (void)r;
      return outcome;
    };
  }
  store::Store::WriteFn Failing(const std::string& message) {
    return Applying(message, Status::Internal("the disk is full"));
  }

  // Every write queued so far has run (the reload queued by a rollback among them).
  void Settle() {
    ASSERT_TRUE(box_->store().WriteSync([](store::WriteTxn&) { return Status::Ok(); }).ok());
  }

  int64_t Waiting(const std::string& step) {
    auto stats = box_->journeys().Stats(box_->workspace(), "follow");
    EXPECT_TRUE(stats) << stats.error().ToString();
    if (!stats) return -1;
    for (const auto& s : *stats)
      if (s.step == step) return s.waiting;
    return -1;
  }

  std::vector<std::string> StatusOf(const std::string& user) {
    std::vector<std::string> out;
    const store::ContactId id = box_->ContactOf(user);
    auto all = box_->Instances("follow");
    EXPECT_TRUE(all) << all.error().ToString();
    for (const auto& i : all.value_or(std::vector<store::Instance>{}))
      if (i.contact == id) out.push_back(i.status);
    return out;
  }

  std::string Traits(const std::string& user) {
    std::string traits;
    const Status read = box_->store().Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto c, t.GetContact(box_->ContactOf(user)));
      if (c) traits = c->traits;
      return Status::Ok();
    });
    EXPECT_TRUE(read.ok()) << read.ToString();
    return traits;
  }

  std::unique_ptr<Sandbox> box_;
};

TEST_F(RollbackTest, AnInstanceStartedByARolledBackWriteIsNotLeftWaiting) {
  ASSERT_TRUE(box_->Send(R"({"type":"track","userId":"ann","event":"Viewed"})").ok());
  const Status failed = box_->store().WriteSync(
      Failing(R"({"type":"track","userId":"bob","event":"Viewed","messageId":"bob-1"})"));
  EXPECT_FALSE(failed.ok());
  Settle();
  EXPECT_EQ(box_->ContactOf("bob"), 0);
  EXPECT_EQ(Waiting("pause"), 1);  // ann only
  EXPECT_EQ(box_->journeys().PendingTimers(), 1u);

  // Handed again, as the pipeline does: bob enters once, and both go on.
  ASSERT_TRUE(
      box_->Send(R"({"type":"track","userId":"bob","event":"Viewed","messageId":"bob-1"})").ok());
  EXPECT_EQ(Waiting("pause"), 2);
  ASSERT_TRUE(box_->Advance(2 * 3600 * 1000).ok());
  EXPECT_EQ(StatusOf("ann"), std::vector<std::string>{"completed"});
  EXPECT_EQ(StatusOf("bob"), std::vector<std::string>{"completed"});
  EXPECT_NE(Traits("bob").find("\"followed\":true"), std::string::npos) << Traits("bob");
}

// A refused request (an unknown journey, segment or contact; a journey not started by the
// API) changes nothing and rebuilds nothing: at a million contacts a rebuild takes seconds.
// A write that fails after changing memory does rebuild it.
TEST_F(RollbackTest, ARefusedRequestReloadsNothingAFailedWriteDoes) {
  ASSERT_TRUE(box_->Send(R"({"type":"track","userId":"ann","event":"Viewed"})").ok());
  const store::WorkspaceId ws = box_->workspace();
  EXPECT_EQ(box_->journeys().SetStatus(ws, "nope", "paused").code(), Code::kNotFound);
  auto triggered = box_->journeys().Trigger(ws, "follow", box_->ContactOf("ann"), "{}");
  ASSERT_FALSE(triggered);
  EXPECT_EQ(triggered.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(box_->journeys().Trigger(ws, "nope", box_->ContactOf("ann"), "{}").error().code(),
            Code::kNotFound);
  EXPECT_EQ(box_->segments().DeleteSegment(ws, "nope").code(), Code::kNotFound);
  EXPECT_EQ(box_->segments().Emit(987654, "Ping", "{}", "k").code(), Code::kNotFound);
  store::ConsentRecord consent;
  consent.subscription = {ws, 987654, "email", "", "unsubscribed", 0};
  consent.source = "api";
  EXPECT_EQ(box_->segments().ApplyConsent(consent, "", "").code(), Code::kNotFound);
  Settle();
  EXPECT_EQ(box_->journeys().Reloads(), 0u);
  EXPECT_EQ(box_->segments().Reloads(), 0u);
  EXPECT_EQ(Waiting("pause"), 1);

  EXPECT_FALSE(
      box_->store().WriteSync(Failing(R"({"type":"track","userId":"bob","event":"Viewed"})")).ok());
  Settle();
  EXPECT_EQ(box_->journeys().Reloads(), 1u);
  // The segment engine rebuilds at its next write.
  ASSERT_TRUE(box_->Send(R"({"type":"track","userId":"cy","event":"Other"})").ok());
  EXPECT_EQ(box_->segments().Reloads(), 1u);
}

TEST_F(RollbackTest, AnInstanceEndedByARolledBackWriteGoesOnAndConvertsWhenHandedAgain) {
  ASSERT_TRUE(box_->Send(R"({"type":"track","userId":"ann","event":"Viewed"})").ok());
  ASSERT_TRUE(box_->Send(R"({"type":"track","userId":"cat","event":"Viewed"})").ok());
  EXPECT_EQ(Waiting("pause"), 2);
  // The goal reached in a write that rolls back: the store still has ann waiting.
  EXPECT_FALSE(box_->store()
                   .WriteSync(Failing(
                       R"({"type":"track","userId":"ann","event":"Done","messageId":"done-1"})"))
                   .ok());
  Settle();
  EXPECT_EQ(StatusOf("ann"), std::vector<std::string>{"active"});
  EXPECT_EQ(Waiting("pause"), 2);
  EXPECT_EQ(box_->journeys().PendingTimers(), 2u);

  // The same event applied again converts her; without it she would have gone on too.
  ASSERT_TRUE(
      box_->Send(R"({"type":"track","userId":"ann","event":"Done","messageId":"done-1"})").ok());
  EXPECT_EQ(StatusOf("ann"), std::vector<std::string>{"converted"});
  ASSERT_TRUE(box_->Advance(2 * 3600 * 1000).ok());
  EXPECT_EQ(StatusOf("cat"), std::vector<std::string>{"completed"});
  EXPECT_EQ(Traits("ann").find("followed"), std::string::npos) << Traits("ann");
}

TEST_F(RollbackTest, TheWritesBeforeAFailedOneInItsGroupStayInMemory) {
  // Hold the writer so that the three writes below run in one group (each in a savepoint).
  std::atomic<bool> holding{false}, release{false};
  std::atomic<int> done{0};
  std::vector<Status> results(3);
  box_->store().Write(
      [&](store::WriteTxn&) -> Status {
        holding = true;
        while (!release) std::this_thread::yield();
        return Status::Ok();
      },
      [&](Status) { ++done; });
  while (!holding) std::this_thread::yield();
  const store::Store::WriteFn writes[] = {
      Applying(R"({"type":"identify","userId":"dan","traits":{"plan":"pro"}})"
               R"(,{"type":"track","userId":"dan","event":"Viewed"})"),
      Failing(R"({"type":"track","userId":"eve","event":"Viewed"})"),
      Applying(R"({"type":"track","userId":"fay","event":"Viewed"})"),
  };
  for (int i = 0; i < 3; ++i)
    box_->store().Write(writes[i], [&, i](Status s) {
      results[i] = s;
      ++done;
    });
  release = true;
  for (int spin = 0; spin < 10'000 && done < 4; ++spin)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(done, 4);
  EXPECT_TRUE(results[0].ok()) << results[0].ToString();
  EXPECT_FALSE(results[1].ok());
  EXPECT_TRUE(results[2].ok()) << results[2].ToString();
  Settle();

  // dan's contact, membership and instance, written before the failure in the same group,
  // are in memory as in the store; eve is in neither.
  const store::ContactId dan = box_->ContactOf("dan");
  ASSERT_NE(dan, 0);
  EXPECT_EQ(box_->segments().View(dan).segments, std::vector<std::string>{"pros"});
  EXPECT_EQ(box_->ContactOf("eve"), 0);
  EXPECT_EQ(Waiting("pause"), 2);
  EXPECT_EQ(box_->journeys().PendingTimers(), 2u);
  ASSERT_TRUE(box_->Advance(2 * 3600 * 1000).ok());
  EXPECT_EQ(StatusOf("dan"), std::vector<std::string>{"completed"});
  EXPECT_EQ(StatusOf("fay"), std::vector<std::string>{"completed"});
  EXPECT_NE(Traits("dan").find("\"followed\":true"), std::string::npos) << Traits("dan");
}

}  // namespace
}  // namespace nudge::journey
