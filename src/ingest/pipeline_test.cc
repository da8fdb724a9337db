#include "ingest/pipeline.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include "ingest/body_codec.h"
#include "profile/applier.h"
#include "store/sqlite/db.h"

namespace nudge::ingest {
namespace {

// The body of one track call for `user` with messageId `id`.
std::string Track(const std::string& user, const std::string& id) {
  return R"({"type":"track","event":"Signed Up","userId":")" + user + R"(","messageId":")" + id +
         R"("})";
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nudge_pipeline_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = store::OpenSqliteStore({.path = (dir_ / "nudge.db").string()});
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_
                    ->WriteSync([&](store::WriteTxn& t) -> Status {
                      auto id = t.InsertWorkspace({0, "w", "wk", "ak", 1});
                      if (!id) return id.error();
                      ws_ = *id;
                      return Status::Ok();
                    })
                    .ok());
  }
  void TearDown() override {
    StopPipeline();
    store_->Close();
    std::filesystem::remove_all(dir_);
  }

  int64_t Mark() {
    auto mark = store_->ReadMark(store::kInboxAppliedMark);
    EXPECT_TRUE(mark) << mark.error().ToString();
    return mark ? *mark : -1;
  }
  std::unique_ptr<store::Inbox> OpenInbox() {
    auto inbox = store::Inbox::Open(
        {.path = (dir_ / "inbox").string(), .legacy_path = {}, .applied = Mark()});
    EXPECT_TRUE(inbox) << inbox.error().ToString();
    return inbox ? std::move(*inbox) : nullptr;
  }
  // Opens the inbox and starts a pipeline on it; returns what Start queued.
  int64_t StartPipeline(size_t max_backlog = 1 << 20, size_t max_backlog_bytes = 256 << 20) {
    inbox_ = OpenInbox();
    pipeline_ = std::make_unique<Pipeline>(*store_, *inbox_, applier_, metrics_,
                                           PipelineOptions{.max_backlog_events = max_backlog,
                                                           .max_backlog_bytes = max_backlog_bytes,
                                                           .limits = {}});
    auto queued = pipeline_->Start();
    EXPECT_TRUE(queued) << queued.error().ToString();
    return queued ? *queued : -1;
  }
  void StopPipeline() {
    if (pipeline_) pipeline_->Stop(10000);
    pipeline_.reset();
    if (inbox_) inbox_->Close();
    inbox_.reset();
  }
  // Accepts a body that passes CheckRequest and waits for the answer.
  Status Accept(const std::string& body, Endpoint endpoint = Endpoint::kTrack,
                Millis received_at = 1000) {
    auto checked = CheckRequest(endpoint, body);
    EXPECT_TRUE(checked);
    // Shared with the callback: set_value may still be running when get() returns.
    auto done = std::make_shared<std::promise<Status>>();
    auto result = done->get_future();
    pipeline_->Accept(ws_, endpoint, received_at, body, checked ? checked->messages : 0,
                      [done](Status s) { done->set_value(std::move(s)); });
    return result.get();
  }
  // Waits through AfterApplied, then counts the workspace's events.
  int64_t AppliedEvents() {
    auto applied = std::make_shared<std::promise<void>>();
    auto result = applied->get_future();
    pipeline_->AfterApplied([applied] { applied->set_value(); });
    result.get();
    int64_t n = -1;
    EXPECT_TRUE(store_
                    ->Read([&](store::ReadTxn& t) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(n, t.CountEvents(ws_));
                      return Status::Ok();
                    })
                    .ok());
    return n;
  }
  // Appends a /v1/track row to the inbox and waits for its commit.
  Result<int64_t> AppendRow(store::Inbox& inbox, const std::string& body,
                            const std::string& endpoint = "/v1/track", bool compressed = false) {
    auto done = std::make_shared<std::promise<Result<int64_t>>>();
    auto result = done->get_future();
    inbox.Append(
        {0, ws_, endpoint, 1000, body, compressed},
        [done](Result<int64_t> id, store::InboxRecord) { done->set_value(std::move(id)); });
    return result.get();
  }
  // Queues a store write that waits for `release`: what the pipeline hands the store waits.
  void HoldWriter(std::promise<void>& release) {
    std::shared_future<void> released = release.get_future().share();
    store_->Write(
        [released](store::WriteTxn&) {
          released.wait();
          return Status::Ok();
        },
        [](Status) {});
  }
  int64_t InboxRows(int64_t after = 0) {
    auto inbox = OpenInbox();
    int64_t n = 0;
    EXPECT_TRUE(inbox
                    ->Scan(after,
                           [&](const store::InboxRecord&) {
                             ++n;
                             return Status::Ok();
                           })
                    .ok());
    inbox->Close();
    return n;
  }

  std::filesystem::path dir_;
  core::MetricsRegistry metrics_;
  profile::Applier applier_{profile::ProfileOptions{}};
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<store::Inbox> inbox_;
  std::unique_ptr<Pipeline> pipeline_;
  store::WorkspaceId ws_ = 0;
};

TEST_F(PipelineTest, AcknowledgedRequestsAreAppliedInOrderAndReadsWaitForThem) {
  EXPECT_EQ(StartPipeline(), 0);
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(Accept(Track("u" + std::to_string(i % 5), "m" + std::to_string(i))).ok());
  ASSERT_TRUE(Accept(Track("u0", "m7")).ok());  // a duplicate, skipped when applied
  EXPECT_EQ(AppliedEvents(), 50);
  EXPECT_EQ(Mark(), 51);  // the store knows how far it applied the inbox
  EXPECT_EQ(pipeline_->BacklogEvents(), 0u);
  StopPipeline();
  EXPECT_EQ(StartPipeline(), 0) << "nothing applied twice after a clean stop";
  EXPECT_EQ(AppliedEvents(), 50);
}

TEST_F(PipelineTest, MessagesAreBuiltFromTheStoredBodyWhenApplied) {
  StartPipeline();
  // Checked on acceptance, built by the feeder: the batch's context is inherited, a missing
  // messageId minted, the write key dropped.
  const std::string body = R"({"writeKey":"wk","context":{"ip":"10.1.2.3"},"batch":[
      {"type":"identify","userId":"ann","traits":{"plan":"pro"},"messageId":"i1"},
      {"type":"track","userId":"ann","event":"Order Completed","properties":{"total":12.5}},
      {"type":"page","userId":"ann","context":{"page":{"path":"/pricing"}},"messageId":"p1"}]})";
  ASSERT_TRUE(Accept(body, Endpoint::kBatch, 5000).ok());
  EXPECT_EQ(AppliedEvents(), 3);
  std::vector<store::Event> events;
  ASSERT_TRUE(store_
                  ->Read([&](store::ReadTxn& t) -> Status {
                    NUDGE_ASSIGN_OR_RETURN(auto id, t.FindContactIdByUserId(ws_, "ann"));
                    if (!id) return Status::NotFound("ann");
                    NUDGE_ASSIGN_OR_RETURN(events, t.ListEvents(*id, 10));
                    return Status::Ok();
                  })
                  .ok());
  ASSERT_EQ(events.size(), 3u);
  int minted = 0;
  for (const auto& e : events) {
    EXPECT_EQ(e.received_at, 5000);
    // A message's own context replaces the batch's.
    EXPECT_EQ(e.body.find(R"("ip":"10.1.2.3")") != std::string::npos, e.name != "Page Viewed")
        << e.body;
    EXPECT_EQ(e.body.find("writeKey"), std::string::npos) << e.body;
    if (e.name == "Order Completed") {
      EXPECT_EQ(e.message_id.size(), 36u);
      ++minted;
    }
    if (e.name == "Page Viewed") {
      EXPECT_NE(e.body.find(R"("path":"/pricing")"), std::string::npos);
    }
  }
  EXPECT_EQ(minted, 1);
}

TEST_F(PipelineTest, RowsLeftInTheInboxAreAppliedAtStartExactlyOnce) {
  // Acknowledged rows that were never applied: what a crash between the inbox commit and the
  // store commit leaves.
  {
    auto inbox = OpenInbox();
    for (int i = 0; i < 20; ++i) {
      auto id = AppendRow(*inbox, Track("late", "late-" + std::to_string(i)));
      ASSERT_TRUE(id);
      EXPECT_EQ(*id, i + 1);
    }
    // A row that no longer parses is skipped; the rows after it are applied.
    ASSERT_TRUE(AppendRow(*inbox, R"({"type":"track"})"));
    ASSERT_TRUE(AppendRow(*inbox, Track("late", "late-last")));
    inbox->Close();
  }
  EXPECT_EQ(StartPipeline(), 22);
  EXPECT_EQ(AppliedEvents(), 21);
  EXPECT_EQ(Mark(), 22);
  ASSERT_TRUE(Accept(Track("late", "after")).ok());
  EXPECT_EQ(AppliedEvents(), 22);
  EXPECT_EQ(Mark(), 23) << "ids go on after the replayed rows";
  StopPipeline();
  EXPECT_EQ(InboxRows(), 0) << "applied rows are deleted";
  EXPECT_EQ(StartPipeline(), 0);
  EXPECT_EQ(AppliedEvents(), 22);
}

// A /v1/batch body of `n` track calls of ~200 bytes each, for `user`.
std::string Batch(const std::string& user, const std::string& prefix, int n) {
  std::string body = R"({"batch":[)";
  for (int i = 0; i < n; ++i) {
    if (i > 0) body += ',';
    body += R"({"type":"track","event":"Product Viewed","userId":")" + user + R"(","messageId":")" +
            prefix + std::to_string(i) + R"(","properties":{"product_id":"sku-)" +
            std::to_string(1000 + i) +
            R"(","name":"Ergonomic Office Chair","price":249.99,"currency":"USD"}})";
  }
  return body + "]}";
}

TEST_F(PipelineTest, LargeBodiesAreStoredCompressedAndAppliedFromThere) {
  StartPipeline();
  std::promise<void> release;
  HoldWriter(release);  // nothing is applied until released: the rows stay in the inbox
  const std::string batch = Batch("ann", "b", 20);
  ASSERT_GE(batch.size(), kCompressFrom);
  ASSERT_TRUE(Accept(batch, Endpoint::kBatch).ok());
  const std::string small = Track("ann", "t1");
  ASSERT_LT(small.size(), kCompressFrom);
  ASSERT_TRUE(Accept(small).ok());
  {
    auto inbox = OpenInbox();
    std::vector<store::InboxRecord> rows;
    ASSERT_TRUE(inbox
                    ->Scan(0,
                           [&](const store::InboxRecord& r) {
                             rows.push_back(r);
                             return Status::Ok();
                           })
                    .ok());
    inbox->Close();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_TRUE(rows[0].compressed);
    EXPECT_LT(rows[0].body.size(), batch.size() / 3) << "the acknowledged batch is stored smaller";
    auto expanded = DecompressBody(rows[0].body, batch.size());
    ASSERT_TRUE(expanded) << expanded.error().ToString();
    EXPECT_EQ(*expanded, batch);
    EXPECT_FALSE(rows[1].compressed);
    EXPECT_EQ(rows[1].body, small);
  }
  release.set_value();
  EXPECT_EQ(AppliedEvents(), 21);
}

TEST_F(PipelineTest, CompressedRowsLeftInTheInboxAreAppliedAtStartAndCorruptOnesSkipped) {
  {
    auto inbox = OpenInbox();
    ASSERT_TRUE(AppendRow(*inbox, CompressBody(Batch("bob", "c", 12)), "/v1/batch", true));
    std::string corrupt = CompressBody(Batch("bob", "d", 12));
    corrupt.resize(corrupt.size() / 2);  // a frame cut short
    ASSERT_TRUE(AppendRow(*inbox, corrupt, "/v1/batch", true));
    ASSERT_TRUE(AppendRow(*inbox, Track("bob", "plain"), "/v1/track", false));
    inbox->Close();
  }
  EXPECT_EQ(StartPipeline(), 3);
  EXPECT_EQ(AppliedEvents(), 13) << "the corrupt row is skipped, the rows around it applied";
  EXPECT_EQ(Mark(), 3);
}

TEST_F(PipelineTest, IdsAreNeverGivenTwiceOnceTheInboxIsEmpty) {
  StartPipeline();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Accept(Track("u", "a" + std::to_string(i))).ok());
  EXPECT_EQ(AppliedEvents(), 3);
  StopPipeline();
  ASSERT_EQ(InboxRows(), 0);
  StartPipeline();
  ASSERT_TRUE(Accept(Track("u", "b")).ok());
  EXPECT_EQ(AppliedEvents(), 4);
  EXPECT_EQ(Mark(), 4);
}

TEST_F(PipelineTest, AFullBacklogRefusesWithUnavailableUntilItIsApplied) {
  StartPipeline(/*max_backlog=*/2);
  // Hold the store's writer: acknowledged requests wait in the backlog behind it.
  std::promise<void> release;
  HoldWriter(release);
  ASSERT_TRUE(Accept(Track("u", "1")).ok());
  ASSERT_TRUE(Accept(Track("u", "2")).ok());
  EXPECT_EQ(pipeline_->BacklogEvents(), 2u);
  Status full = Accept(Track("u", "3"));
  EXPECT_EQ(full.code(), Code::kUnavailable) << full.ToString();
  EXPECT_NE(full.message().find("backlog"), std::string::npos) << full.ToString();
  release.set_value();
  EXPECT_EQ(AppliedEvents(), 2);
  EXPECT_TRUE(Accept(Track("u", "3")).ok());
  EXPECT_EQ(AppliedEvents(), 3);
}

// Large events could fill the memory within the events' bound: the bodies waiting to be built
// have a bound of their own.
TEST_F(PipelineTest, TheBacklogsBytesAreBoundedToo) {
  StartPipeline(/*max_backlog=*/1 << 20, /*max_backlog_bytes=*/4096);
  std::promise<void> release;
  HoldWriter(release);
  // The first 2,048 requests go to the store at once (built, their bodies let go); the next
  // ones wait with their bodies. Each of the first is built before the next comes: a feeder
  // thread that runs late (a busy machine) would otherwise still hold their bodies, and the
  // bound would be reached before the store has its 2,048.
  int accepted = 0;
  Status full = Status::Ok();
  for (int i = 0; i < 3000 && full.ok(); ++i) {
    full = Accept(Track("u", std::to_string(i)));
    if (full.ok()) ++accepted;
    for (int waited = 0;
         full.ok() && accepted <= 2048 && pipeline_->BacklogBytes() > 0 && waited < 100'000;
         ++waited)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  EXPECT_EQ(full.code(), Code::kUnavailable) << full.ToString();
  EXPECT_NE(full.message().find("MiB of requests not yet applied"), std::string::npos)
      << full.ToString();
  EXPECT_GT(accepted, 2048);
  EXPECT_LT(accepted, 2048 + 100);
  EXPECT_LE(pipeline_->BacklogBytes(), 4096u + 200);
  release.set_value();
  EXPECT_EQ(AppliedEvents(), accepted);
  EXPECT_EQ(pipeline_->BacklogBytes(), 0u);
  EXPECT_TRUE(Accept(Track("u", "after")).ok());
}

TEST_F(PipelineTest, StopAppliesTheBacklogFirst) {
  StartPipeline();
  std::promise<void> release;
  HoldWriter(release);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Accept(Track("u", std::to_string(i))).ok());
  std::thread stopper([&] { pipeline_->Stop(10000); });
  release.set_value();
  stopper.join();
  EXPECT_EQ(Mark(), 10);
  EXPECT_EQ(pipeline_->BacklogEvents(), 0u);
  EXPECT_EQ(Accept(Track("u", "late")).code(), Code::kUnavailable);
}

// The messageIds of a workspace's stored events, in the order they were stored.
std::vector<std::string> StoredMessageIds(store::Store& store, store::WorkspaceId ws) {
  std::vector<std::string> ids;
  EXPECT_TRUE(store
                  .Read([&](store::ReadTxn& t) -> Status {
                    NUDGE_ASSIGN_OR_RETURN(auto events,
                                           t.EventsAfter(ws, 0, 10, store::EventOrigin::kAll));
                    for (const auto& e : events) ids.push_back(e.message_id);
                    return Status::Ok();
                  })
                  .ok());
  return ids;
}

// An observer whose events fail as `fail` says (it runs on the store writer's thread).
class FailingObserver final : public profile::ContactObserver {
 public:
  explicit FailingObserver(std::function<Status(const store::Event&)> fail)
      : fail_(std::move(fail)) {}
  Status OnContactCreated(store::WriteTxn&, const store::Contact&) override { return {}; }
  Status OnContactChanged(store::WriteTxn&, const store::Contact&, std::string_view) override {
    return {};
  }
  Status OnEvent(store::WriteTxn&, const store::Event& e) override { return fail_(e); }
  Status OnContactsMerged(store::WriteTxn&, store::ContactId, store::ContactId) override {
    return {};
  }
  Status OnContactDeleted(store::WriteTxn&, store::ContactId) override { return {}; }

 private:
  std::function<Status(const store::Event&)> fail_;
};

// Fails the event "flaky" with kUnavailable twice (a busy or full disk), and "broken" always
// with kInternal (a bug).
struct Flaky {
  int left = 2;  // store writer thread only
  FailingObserver observer{[this](const store::Event& e) -> Status {
    if (e.message_id == "flaky" && left > 0) {
      --left;
      return Status::Unavailable("disk full");
    }
    if (e.message_id == "broken") return Status::Internal("a bug");
    return {};
  }};
};

TEST_F(PipelineTest, TransientFailuresAreRetriedInOrderAndBrokenRequestsSkipped) {
  Flaky flaky;
  applier_ = profile::Applier(profile::ProfileOptions{}, &flaky.observer);
  StartPipeline();
  for (const char* id : {"a", "flaky", "b", "broken", "c"})
    ASSERT_TRUE(Accept(Track("u", id)).ok());
  EXPECT_EQ(AppliedEvents(), 4);
  EXPECT_EQ(StoredMessageIds(*store_, ws_), (std::vector<std::string>{"a", "flaky", "b", "c"}));
  EXPECT_EQ(Mark(), 5);
  EXPECT_EQ(flaky.left, 0);
  EXPECT_GE(metrics_.GetCounter("nudge_ingest_apply_retries_total", "").Value(), 3u);
  EXPECT_EQ(metrics_.GetCounter("nudge_ingest_skipped_total", "").Value(), 1u);
  StopPipeline();
}

// A damaged database (or a full disk) is the storage failing, not the request: the request
// waits and is applied once the storage works again, never dropped. Meanwhile the failure is
// reported, and after a while reads stop waiting for it.
TEST_F(PipelineTest, TheStorageFailingKeepsAcknowledgedRequestsAndReadsStopWaiting) {
  // "stuck" fails with what SQLite says of a damaged page, until healed.
  std::atomic<bool> healed{false};
  FailingObserver observer([&](const store::Event& e) -> Status {
    if (e.message_id == "stuck" && !healed.load())
      return store::sqlite::SqliteError(nullptr, SQLITE_CORRUPT, "sqlite step");
    return {};
  });
  applier_ = profile::Applier(profile::ProfileOptions{}, &observer);
  StartPipeline();
  // Held, so that the three reach the store in one group: the one before the failing one
  // is applied all the same.
  std::promise<void> release;
  HoldWriter(release);
  ASSERT_TRUE(Accept(Track("u", "a")).ok());
  ASSERT_TRUE(Accept(Track("u", "stuck")).ok());
  ASSERT_TRUE(Accept(Track("u", "c")).ok());
  release.set_value();
  // A read waiting for the backlog is answered with what is applied after some seconds.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(AppliedEvents(), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  auto failing = pipeline_->FailingNow();
  ASSERT_TRUE(failing);
  EXPECT_TRUE(failing->stalled);
  EXPECT_GE(failing->seconds, 5.0);
  EXPECT_NE(failing->error.find("malformed"), std::string::npos) << failing->error;
  EXPECT_EQ(metrics_.GetCounter("nudge_ingest_skipped_total", "").Value(), 0u);
  healed = true;
  for (int i = 0; i < 200 && pipeline_->BacklogEvents() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(AppliedEvents(), 3);
  EXPECT_EQ(StoredMessageIds(*store_, ws_), (std::vector<std::string>{"a", "stuck", "c"}));
  EXPECT_FALSE(pipeline_->FailingNow());
  StopPipeline();
}

// The same requests acknowledged while the writer is held reach the store together: a failure
// rolls back the writes of its group before it too (no savepoint each), and they are handed
// again with the rest.
TEST_F(PipelineTest, AFailureInsideAGroupRollsItBackAndEverythingIsAppliedOnceInOrder) {
  Flaky flaky;
  applier_ = profile::Applier(profile::ProfileOptions{}, &flaky.observer);
  StartPipeline();
  std::promise<void> release;
  HoldWriter(release);
  for (const char* id : {"a", "flaky", "b", "broken", "c"})
    ASSERT_TRUE(Accept(Track("u", id)).ok());
  release.set_value();
  EXPECT_EQ(AppliedEvents(), 4);
  EXPECT_EQ(StoredMessageIds(*store_, ws_), (std::vector<std::string>{"a", "flaky", "b", "c"}));
  EXPECT_EQ(Mark(), 5);
  EXPECT_EQ(flaky.left, 0);
  EXPECT_EQ(metrics_.GetCounter("nudge_ingest_skipped_total", "").Value(), 1u);
  StopPipeline();
}

}  // namespace
}  // namespace nudge::ingest
