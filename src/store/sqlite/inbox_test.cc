#include "store/inbox.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace nudge::store {
namespace {

class InboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nudge_inbox_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Inbox> Open(int64_t applied) {
    auto inbox = Inbox::Open({.path = (dir_ / "inbox.db").string(), .applied = applied});
    EXPECT_TRUE(inbox) << inbox.error().ToString();
    return inbox ? std::move(*inbox) : nullptr;
  }

  // Appends `n` rows at once and waits for their commits; returns their ids.
  static std::vector<int64_t> Append(Inbox& inbox, int n) {
    std::vector<std::future<Result<int64_t>>> pending;
    for (int i = 0; i < n; ++i) {
      auto done = std::make_shared<std::promise<Result<int64_t>>>();
      pending.push_back(done->get_future());
      inbox.Append({0, 1, "/v1/track", 1000, R"({"type":"track","event":"E","userId":"u"})"},
                   [done](Result<int64_t> id, InboxRecord) { done->set_value(std::move(id)); });
    }
    std::vector<int64_t> ids;
    for (auto& f : pending) {
      auto id = f.get();
      EXPECT_TRUE(id) << id.error().ToString();
      ids.push_back(id ? *id : -1);
    }
    return ids;
  }

  // The ids of the rows in the inbox, as a restart would find them.
  static std::vector<int64_t> Rows(Inbox& inbox) {
    std::vector<int64_t> ids;
    const Status s = inbox.Scan(0, [&](const InboxRecord& r) {
      ids.push_back(r.id);
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ids;
  }

  // Polls until no row up to `id` is left, for at most `limit`; returns whether that happened.
  static bool GoneWithin(Inbox& inbox, int64_t id, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      const auto rows = Rows(inbox);
      if (rows.empty() || rows.front() > id) return true;
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  std::filesystem::path dir_;
};

TEST_F(InboxTest, AppliedRowsAreDeletedWhileRequestsKeepArriving) {
  auto inbox = Open(0);
  ASSERT_TRUE(inbox);
  const auto ids = Append(*inbox, 3000);
  ASSERT_EQ(ids.front(), 1);
  ASSERT_EQ(ids.back(), 3000);
  inbox->Release(2000);
  // One row per commit from here: each commit deletes a share of the applied rows with it.
  for (int i = 0; i < 100; ++i) Append(*inbox, 1);
  EXPECT_TRUE(GoneWithin(*inbox, 2000, std::chrono::seconds(10)));
  const auto rows = Rows(*inbox);
  ASSERT_EQ(rows.size(), 1100u) << "the rows not yet applied stay";
  EXPECT_EQ(rows.front(), 2001);
  EXPECT_EQ(rows.back(), 3100);
  inbox->Close();
}

TEST_F(InboxTest, AppliedRowsAreDeletedWhenNothingArrives) {
  auto inbox = Open(0);
  ASSERT_TRUE(inbox);
  Append(*inbox, 5000);
  inbox->Release(4500);
  EXPECT_TRUE(GoneWithin(*inbox, 4500, std::chrono::seconds(10)));
  EXPECT_EQ(Rows(*inbox).size(), 500u);
  inbox->Close();
}

TEST_F(InboxTest, DeletingAfterARestartStartsAtTheOldestRow) {
  // Ids carry on from the store's applied mark, which is high on a server that has run for a
  // while: deleting must not walk the ids below the oldest row that is left.
  constexpr int64_t kMark = 50'000'000;
  {
    auto inbox = Open(kMark);
    ASSERT_TRUE(inbox);
    const auto ids = Append(*inbox, 10);
    ASSERT_EQ(ids.front(), kMark + 1);
    inbox->Close();  // nothing released: the rows stay
  }
  auto inbox = Open(kMark);
  ASSERT_TRUE(inbox);
  ASSERT_EQ(Rows(*inbox).size(), 10u);
  inbox->Release(kMark + 10);
  EXPECT_TRUE(GoneWithin(*inbox, kMark + 10, std::chrono::seconds(5)));
  EXPECT_EQ(Append(*inbox, 1).front(), kMark + 11) << "an id is never given twice";
  inbox->Close();
}

// A store that lost commits (its log removed, an older copy restored beside a newer inbox) is
// behind rows the inbox deleted once the store had them: refused at open, not served partly.
TEST_F(InboxTest, AStoreBehindWhatTheInboxDeletedIsRefused) {
  {
    auto inbox = Open(0);
    ASSERT_TRUE(inbox);
    Append(*inbox, 5);
    inbox->Release(2);
    inbox->Close();  // rows 1 and 2 deleted
  }
  auto behind = Inbox::Open({.path = (dir_ / "inbox.db").string(), .applied = 0});
  ASSERT_FALSE(behind);
  EXPECT_NE(behind.error().message().find("the store lost writes"), std::string::npos)
      << behind.error().ToString();
  auto inbox = Open(2);  // the store's mark as it was
  ASSERT_TRUE(inbox);
  EXPECT_EQ(Rows(*inbox), (std::vector<int64_t>{3, 4, 5}));
  inbox->Close();
}

TEST_F(InboxTest, CloseDeletesEveryAppliedRow) {
  auto inbox = Open(0);
  ASSERT_TRUE(inbox);
  Append(*inbox, 3000);
  inbox->Release(2999);
  inbox->Close();
  auto again = Open(2999);
  ASSERT_TRUE(again);
  EXPECT_EQ(Rows(*again), std::vector<int64_t>{3000});
  again->Close();
}

}  // namespace
}  // namespace nudge::store
