// The checkpointer keeps the log bounded under a writer that never pauses: the writer restarts
// the log itself between two transactions; a reader still on the log defers the restart
// without losing anything, and it happens once the reader is done; past the forced limit the
// writer waits for such a reader a little, and not at every transaction.
#include "store/sqlite/checkpointer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

namespace nudge::store::sqlite {
namespace {

namespace fs = std::filesystem;

// Small limits, so that a test writes a few hundred pages rather than a gigabyte.
constexpr CheckpointLimits kLimits{.checkpoint_frames = 8,
                                   .restart_frames = 64,
                                   .restart_lag = 32,
                                   .force_restart_frames = 512,
                                   .force_wait_ms = 20};

class CheckpointerTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(kLimits); }

  void Open(CheckpointLimits limits) {
    ckpt_.reset();
    writer_.reset();
    dir_ = fs::temp_directory_path() / ("nudge-ckpt-test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "t.db").string();
    auto db = Db::Open(path_, /*read_only=*/false);
    ASSERT_TRUE(db) << db.error().ToString();
    writer_ = std::move(*db);
    ASSERT_TRUE(writer_->Exec("PRAGMA journal_mode = WAL").ok());
    ASSERT_TRUE(writer_->Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)").ok());
    auto c = Checkpointer::Attach(path_, *writer_, limits);
    ASSERT_TRUE(c) << c.error().ToString();
    ckpt_ = std::move(*c);
    metrics_ = std::make_unique<core::MetricsRegistry>();
    ckpt_->AddMetrics(*metrics_, "t", "test");
  }
  void TearDown() override {
    ckpt_.reset();
    writer_.reset();
    fs::remove_all(dir_);
  }

  // Frames in the log file now (its size less the header, over the frame size).
  int64_t LogFrames() const {
    std::error_code ec;
    const auto size = static_cast<int64_t>(fs::file_size(path_ + "-wal", ec));
    return ec || size < 32 ? 0 : (size - 32) / (kPageBytes + 24);
  }

  // One transaction of four rows of ~3 KB (a page or more each), as the writer's loop runs
  // it: BeforeWrite, then the transaction, with no pause after it.
  void Write() {
    ckpt_->BeforeWrite();
    ASSERT_TRUE(writer_->Run("BEGIN IMMEDIATE").ok());
    for (int i = 0; i < 4; ++i) {
      auto stmt = writer_->Prepare("INSERT INTO t(id, body) VALUES(?, randomblob(3000))");
      ASSERT_TRUE(stmt);
      StmtUse q(**stmt);
      q->Bind(1, next_id_++);
      ASSERT_TRUE(q->Exec().ok());
    }
    ASSERT_TRUE(writer_->Run("COMMIT").ok());
    max_frames_ = std::max(max_frames_, LogFrames());
  }

  // Attempts to restart the log that were put off by a reader, and those that went through.
  uint64_t Refused() { return metrics_->GetCounter("t_log_restarts_refused_total", "").Value(); }
  uint64_t Restarts() {
    return metrics_->GetHistogram("t_log_restart_seconds", "", {}).Read().count - Refused();
  }

  // A reader inside a transaction: its first Count() takes the snapshot it keeps until COMMIT.
  struct Reader {
    std::unique_ptr<Db> db;
    Stmt* count = nullptr;
    int64_t Count() {
      StmtUse q(*count);
      auto row = q->Step();
      return row && *row ? q->Int(0) : -1;
    }
  };
  Reader OpenReader() {
    Reader r;
    auto db = Db::Open(path_, /*read_only=*/true);
    EXPECT_TRUE(db);
    if (!db) return r;
    r.db = std::move(*db);
    EXPECT_TRUE(r.db->Exec("BEGIN").ok());
    auto count = r.db->Prepare("SELECT count(*) FROM t");
    EXPECT_TRUE(count);
    if (count) r.count = *count;
    return r;
  }

  int64_t Rows() {
    auto stmt = writer_->Prepare("SELECT count(*) FROM t");
    StmtUse q(**stmt);
    auto row = q->Step();
    return row && *row ? q->Int(0) : -1;
  }

  fs::path dir_;
  std::string path_;
  std::unique_ptr<Db> writer_;
  std::unique_ptr<Checkpointer> ckpt_;
  std::unique_ptr<core::MetricsRegistry> metrics_;
  int64_t next_id_ = 1;
  int64_t max_frames_ = 0;
};

TEST_F(CheckpointerTest, TheLogStartsOverUnderAWriterThatNeverPauses) {
  // No forced restarts here: the log starts over only as a writer that never pauses lets it.
  CheckpointLimits limits = kLimits;
  limits.force_restart_frames = 1 << 30;
  ASSERT_NO_FATAL_FAILURE(Open(limits));
  for (int i = 0; i < 600; ++i) ASSERT_NO_FATAL_FAILURE(Write());
  // ~3,600 frames written (all of them in the log without restarts): the log restarted each
  // time it passed restart_frames, or soon after. How soon depends on the checkpoint thread
  // keeping up, which a busy machine delays (595 frames was seen under a parallel build), so
  // the bound is a quarter of what no restart would leave.
  EXPECT_GE(Restarts(), 10u);
  EXPECT_LT(max_frames_, 14 * limits.restart_frames) << "the log grew to " << max_frames_;
  EXPECT_EQ(Rows(), 2400);
}

TEST_F(CheckpointerTest, AReaderOnTheLogDefersTheRestartUntilItIsDone) {
  ASSERT_NO_FATAL_FAILURE(Write());
  Reader reader = OpenReader();
  ASSERT_TRUE(reader.count);
  EXPECT_EQ(reader.Count(), 4);
  // Up to twice restart_frames, short of the forced restart: the checkpoints cannot fold back
  // what the reader may still read, and the log is not restarted under it.
  while (LogFrames() < 2 * kLimits.restart_frames) ASSERT_NO_FATAL_FAILURE(Write());
  EXPECT_EQ(Restarts(), 0u);
  EXPECT_EQ(reader.Count(), 4);  // the reader's snapshot is unchanged
  ASSERT_TRUE(reader.db->Exec("COMMIT").ok());
  // The reader is done: the next attempts go through.
  for (int i = 0; i < 2 * kLimits.restart_frames && Restarts() == 0; ++i)
    ASSERT_NO_FATAL_FAILURE(Write());
  EXPECT_GE(Restarts(), 1u);
  const int64_t rows = next_id_ - 1;
  EXPECT_EQ(Rows(), rows);
}

TEST_F(CheckpointerTest, AReaderThatStaysIsWaitedForOncePastTheForcedLimit) {
  ASSERT_NO_FATAL_FAILURE(Write());
  Reader reader = OpenReader();
  ASSERT_TRUE(reader.count);
  EXPECT_EQ(reader.Count(), 4);
  // Past force_restart_frames the writer waits for the reader (force_wait_ms), is refused
  // again, and then leaves it restart_frames more frames before the next try: the reader is
  // never cut off and the writer is not held at every transaction.
  while (LogFrames() < kLimits.force_restart_frames + 2 * kLimits.restart_frames)
    ASSERT_NO_FATAL_FAILURE(Write());
  EXPECT_EQ(Restarts(), 0u);
  const uint64_t refused = Refused();
  EXPECT_GE(refused, 1u);
  EXPECT_LE(refused, static_cast<uint64_t>(kLimits.restart_frames / kLimits.checkpoint_frames + 3))
      << "the writer tried at nearly every transaction";
  EXPECT_EQ(reader.Count(), 4);
  ASSERT_TRUE(reader.db->Exec("COMMIT").ok());
  for (int i = 0; i < 4 * kLimits.restart_frames && Restarts() == 0; ++i)
    ASSERT_NO_FATAL_FAILURE(Write());
  EXPECT_GE(Restarts(), 1u);
}

// An erasure's purge empties the log file at once; a reader on the log makes it owed (the
// writer goes on meanwhile), and it is done once the reader leaves, with no write after it.
TEST_F(CheckpointerTest, APurgeEmptiesTheLogOrIsOwedUntilTheReaderLeaves) {
  ASSERT_NO_FATAL_FAILURE(Write());
  ASSERT_NO_FATAL_FAILURE(Write());
  ASSERT_GT(LogFrames(), 0);
  EXPECT_TRUE(ckpt_->PurgeLog());
  EXPECT_EQ(fs::file_size(path_ + "-wal"), 0u);
  EXPECT_FALSE(ckpt_->PurgeOwed());

  ASSERT_NO_FATAL_FAILURE(Write());
  Reader reader = OpenReader();
  ASSERT_TRUE(reader.count);
  EXPECT_EQ(reader.Count(), 12);
  EXPECT_FALSE(ckpt_->PurgeLog()) << "the reader's snapshot is in the log";
  EXPECT_TRUE(ckpt_->PurgeOwed());
  EXPECT_GT(LogFrames(), 0);
  ASSERT_NO_FATAL_FAILURE(Write());  // the writer is not held up by the owed purge
  EXPECT_TRUE(ckpt_->PurgeOwed());
  EXPECT_EQ(reader.Count(), 12);

  reader.db.reset();
  for (int i = 0; i < 250 && ckpt_->PurgeOwed(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(ckpt_->PurgeOwed()) << "still owed 5 s after the reader left";
  EXPECT_EQ(LogFrames(), 0);
  EXPECT_EQ(Rows(), 16);
}

}  // namespace
}  // namespace nudge::store::sqlite
