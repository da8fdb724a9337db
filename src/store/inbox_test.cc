#include "store/inbox.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "store/test_files.h"

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

  std::filesystem::path Dir() const { return dir_ / "inbox"; }

  // A segment is closed by age only where a test says so (`segment_seconds`): on a slow disk a
  // few commits take a second, and a test counting segments would find one more.
  Result<std::unique_ptr<Inbox>> TryOpen(int64_t applied, int64_t segment_bytes = 32 << 20,
                                         std::string legacy = {}, int segment_seconds = 3600) {
    return Inbox::Open({.path = Dir().string(),
                        .legacy_path = std::move(legacy),
                        .applied = applied,
                        .segment_bytes = segment_bytes,
                        .segment_seconds = segment_seconds});
  }
  std::unique_ptr<Inbox> Open(int64_t applied, int64_t segment_bytes = 32 << 20,
                              int segment_seconds = 3600) {
    auto inbox = TryOpen(applied, segment_bytes, {}, segment_seconds);
    EXPECT_TRUE(inbox) << inbox.error().ToString();
    return inbox ? std::move(*inbox) : nullptr;
  }

  static InboxRecord Track(int i) {
    return {0, 1, "/v1/track", 1000 + i,
            R"({"type":"track","event":"E","userId":"u)" + std::to_string(i) + R"("})"};
  }

  using Pending = std::vector<std::future<Result<int64_t>>>;
  // Appends the records at once; each future gets what its record got once committed.
  static Pending Queue(Inbox& inbox, std::vector<InboxRecord> records) {
    Pending pending;
    for (auto& r : records) {
      auto done = std::make_shared<std::promise<Result<int64_t>>>();
      pending.push_back(done->get_future());
      inbox.Append(std::move(r),
                   [done](Result<int64_t> id, InboxRecord) { done->set_value(std::move(id)); });
    }
    return pending;
  }
  static std::vector<Result<int64_t>> Wait(Pending pending) {
    std::vector<Result<int64_t>> out;
    for (auto& f : pending) out.push_back(f.get());
    return out;
  }
  // Appends the records at once and waits for their commits; returns what each got.
  static std::vector<Result<int64_t>> AppendAll(Inbox& inbox, std::vector<InboxRecord> records) {
    return Wait(Queue(inbox, std::move(records)));
  }

  // Appends `record`, waits for its commit, and holds the inbox's writer thread in its callback
  // (callbacks run there) until Release or the end of the scope: the records appended meanwhile
  // are all in the queue when the writer takes its next group, so they make one group.
  class HeldWriter {
   public:
    HeldWriter(Inbox& inbox, InboxRecord record) {
      auto holding = std::make_shared<std::promise<Result<int64_t>>>();
      auto held = holding->get_future();
      inbox.Append(std::move(record), [holding, released = release_.get_future().share()](
                                          Result<int64_t> id, InboxRecord) {
        holding->set_value(std::move(id));
        released.wait();
      });
      const Result<int64_t> id = held.get();
      EXPECT_TRUE(id) << id.error().ToString();
    }
    ~HeldWriter() { Release(); }
    void Release() {
      if (!released_) release_.set_value();
      released_ = true;
    }

   private:
    std::promise<void> release_;
    bool released_ = false;
  };

  // Appends `n` records at once and waits for their commits; returns their ids.
  static std::vector<int64_t> Append(Inbox& inbox, int n) {
    std::vector<InboxRecord> records;
    for (int i = 0; i < n; ++i) records.push_back(Track(i));
    std::vector<int64_t> ids;
    for (auto& id : AppendAll(inbox, std::move(records))) {
      EXPECT_TRUE(id) << id.error().ToString();
      ids.push_back(id ? *id : -1);
    }
    return ids;
  }

  // The segment a group after a failed one went to, starting at applied + 1 and holding
  // `records`: written by an inbox of its own, then put beside the ones in Dir().
  void AddNextSegment(int64_t applied, std::vector<InboxRecord> records) {
    const auto other = dir_ / "other";
    {
      auto inbox = Inbox::Open({.path = other.string(), .legacy_path = {}, .applied = applied});
      ASSERT_TRUE(inbox) << inbox.error().ToString();
      for (const auto& id : AppendAll(**inbox, std::move(records)))
        EXPECT_TRUE(id) << id.error().ToString();
      (*inbox)->Close();
    }
    for (const auto& e : std::filesystem::directory_iterator(other))
      std::filesystem::copy_file(e.path(), Dir() / e.path().filename());
  }

  // Appends `n` records to an inbox opened at `applied`, and closes it.
  void WriteAndClose(int n, int64_t applied = 0) {
    auto inbox = Open(applied);
    ASSERT_TRUE(inbox);
    Append(*inbox, n);
    inbox->Close();
  }

  // The records past `after`, as a restart would find them.
  static std::vector<InboxRecord> Records(Inbox& inbox, int64_t after = 0) {
    std::vector<InboxRecord> out;
    const Status s = inbox.Scan(after, [&](const InboxRecord& r) {
      out.push_back(r);
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  // Their ids.
  static std::vector<int64_t> Rows(Inbox& inbox, int64_t after = 0) {
    std::vector<int64_t> ids;
    for (const auto& r : Records(inbox, after)) ids.push_back(r.id);
    return ids;
  }

  // An inbox of an earlier version: a SQLite table in `path`, with the rows `values` inserts
  // ("(id, ws, endpoint, received_at, body), ...").
  static void MakeLegacyInbox(const std::string& path, const std::string& values) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const std::string sql =
        "CREATE TABLE inbox(id INTEGER PRIMARY KEY, ws INTEGER NOT NULL, endpoint TEXT NOT NULL, "
        "received_at INTEGER NOT NULL, body TEXT NOT NULL); INSERT INTO inbox VALUES " +
        values;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK);
  }

  std::vector<std::filesystem::path> Segments() const {
    std::vector<std::filesystem::path> out;
    if (!std::filesystem::exists(Dir())) return out;
    for (const auto& e : std::filesystem::directory_iterator(Dir())) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
  }

  // Polls until no record up to `id` is left on disk, for at most `limit`.
  bool GoneWithin(Inbox& inbox, int64_t id, std::chrono::milliseconds limit) {
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

// Limits the size of the files this process writes while it lives (a disk that fills, as the
// inbox sees it): a write past it fails with EFBIG instead of raising SIGXFSZ.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    std::signal(SIGXFSZ, SIG_IGN);
    ok_ = getrlimit(RLIMIT_FSIZE, &old_) == 0;
    rlimit small = old_;
    small.rlim_cur = bytes;
    ok_ = ok_ && setrlimit(RLIMIT_FSIZE, &small) == 0;
  }
  ~FileSizeLimit() { setrlimit(RLIMIT_FSIZE, &old_); }
  bool ok() const { return ok_; }

 private:
  rlimit old_{};
  bool ok_ = false;
};

TEST_F(InboxTest, RecordsReadBackAsWrittenAfterARestart) {
  {
    auto inbox = Open(0);
    ASSERT_TRUE(inbox);
    std::string zstd_like("\x28\xb5\x2f\xfd\0\x01\xff", 7);  // any bytes, NUL included
    ASSERT_EQ(AppendAll(*inbox, {{0, 7, "/v1/batch", 1234567, zstd_like, true}}).at(0).value(), 1);
    Append(*inbox, 2);
    inbox->Close();
  }
  auto inbox = Open(0);
  ASSERT_TRUE(inbox);
  const auto seen = Records(*inbox);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].id, 1);
  EXPECT_EQ(seen[0].workspace, 7);
  EXPECT_EQ(seen[0].endpoint, "/v1/batch");
  EXPECT_EQ(seen[0].received_at, 1234567);
  EXPECT_TRUE(seen[0].compressed);
  EXPECT_EQ(seen[0].body, std::string("\x28\xb5\x2f\xfd\0\x01\xff", 7));
  EXPECT_EQ(seen[2].id, 3);
  EXPECT_FALSE(seen[2].compressed);
  EXPECT_EQ(seen[2].body, Track(1).body);
  EXPECT_EQ(Append(*inbox, 1).front(), 4) << "ids carry on";
  EXPECT_EQ(Rows(*inbox, 2), (std::vector<int64_t>{3, 4}));
  inbox->Close();
}

TEST_F(InboxTest, AppliedSegmentsAreDeletedWhileRequestsKeepArriving) {
  auto inbox = Open(0, /*segment_bytes=*/4096);
  ASSERT_TRUE(inbox);
  for (int i = 0; i < 30; ++i) Append(*inbox, 100);  // a segment per commit, about
  ASSERT_GT(Segments().size(), 20u);
  inbox->Release(2000);
  for (int i = 0; i < 10; ++i) Append(*inbox, 10);
  EXPECT_TRUE(GoneWithin(*inbox, 1900, std::chrono::seconds(10)));
  const auto rows = Rows(*inbox, 2000);
  ASSERT_EQ(rows.size(), 1100u) << "the records not yet applied stay";
  EXPECT_EQ(rows.front(), 2001);
  EXPECT_EQ(rows.back(), 3100);
  inbox->Close();
}

// A request's body leaves the disk soon after it is applied, even when no more arrive: the
// segment being written is closed when old enough and deleted once applied.
TEST_F(InboxTest, AnAppliedSegmentIsDeletedWhenNothingArrives) {
  auto inbox = Open(0, 32 << 20, /*segment_seconds=*/1);
  ASSERT_TRUE(inbox);
  Append(*inbox, 500);
  ASSERT_EQ(Segments().size(), 1u);
  inbox->Release(499);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(Segments().size(), 1u) << "request 500 is not applied yet";
  inbox->Release(500);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!Segments().empty() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(Segments().empty());
  EXPECT_EQ(Append(*inbox, 1).front(), 501) << "an id is never given twice";
  inbox->Close();
}

// An erasure rolls the inbox: the segment being written goes as soon as it is applied, not
// an hour later, and the next request starts another segment (whether it comes before the
// old one is deleted or after).
TEST_F(InboxTest, ARolledSegmentIsDeletedOnceAppliedWithoutWaitingForItsAge) {
  auto inbox = Open(0, 32 << 20);  // closed by age after an hour
  ASSERT_TRUE(inbox);
  Append(*inbox, 50);
  inbox->Release(50);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  ASSERT_EQ(Segments().size(), 1u) << "applied, but not old enough";
  inbox->Roll();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!Segments().empty() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(Segments().empty());
  // Rolled while requests keep arriving: the next group starts a new segment and the rolled
  // one goes once it is applied.
  Append(*inbox, 10);
  const auto rolled = Segments();
  ASSERT_EQ(rolled.size(), 1u);
  inbox->Roll();
  inbox->Release(60);
  EXPECT_EQ(Append(*inbox, 1).front(), 61) << "an id is never given twice";
  const auto until2 = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::filesystem::exists(rolled[0]) && std::chrono::steady_clock::now() < until2)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(std::filesystem::exists(rolled[0]));
  EXPECT_EQ(Rows(*inbox, 60), (std::vector<int64_t>{61})) << "the request after it stays";
  inbox->Close();
}

TEST_F(InboxTest, IdsCarryOnFromTheStoresMarkAfterARestart) {
  // Ids carry on from the store's applied mark, which is high on a server that has run for a
  // while, and the records left are found again.
  constexpr int64_t kMark = 50'000'000;
  {
    auto inbox = Open(kMark);
    ASSERT_TRUE(inbox);
    const auto ids = Append(*inbox, 10);
    ASSERT_EQ(ids.front(), kMark + 1);
    inbox->Close();  // nothing released: the records stay
  }
  auto inbox = Open(kMark);
  ASSERT_TRUE(inbox);
  ASSERT_EQ(Rows(*inbox, kMark).size(), 10u);
  inbox->Release(kMark + 10);
  EXPECT_EQ(Append(*inbox, 1).front(), kMark + 11) << "an id is never given twice";
  inbox->Close();
}

// A store that lost commits (its log removed, an older copy restored beside a newer inbox) is
// behind records the inbox deleted once the store had them: refused at open, not served partly.
TEST_F(InboxTest, AStoreBehindWhatTheInboxDeletedIsRefused) {
  {
    auto inbox = Open(0, /*segment_bytes=*/64);  // a segment per commit
    ASSERT_TRUE(inbox);
    for (int i = 0; i < 5; ++i) Append(*inbox, 1);
    inbox->Release(2);
    inbox->Close();  // the segments of records 1 and 2 deleted
  }
  auto behind = TryOpen(0);
  ASSERT_FALSE(behind);
  EXPECT_NE(behind.error().message().find("the store lost writes"), std::string::npos)
      << behind.error().ToString();
  auto inbox = Open(2);  // the store's mark as it was
  ASSERT_TRUE(inbox);
  EXPECT_EQ(Rows(*inbox), (std::vector<int64_t>{3, 4, 5}));
  inbox->Close();
}

TEST_F(InboxTest, CloseDeletesEveryAppliedSegment) {
  auto inbox = Open(0, /*segment_bytes=*/64);
  ASSERT_TRUE(inbox);
  for (int i = 0; i < 4; ++i) Append(*inbox, 1);
  inbox->Release(3);
  inbox->Close();
  EXPECT_EQ(Segments().size(), 1u);
  auto again = Open(3);
  ASSERT_TRUE(again);
  EXPECT_EQ(Rows(*again), std::vector<int64_t>{4});
  again->Release(4);
  again->Close();
  EXPECT_TRUE(Segments().empty());
}

// What kill -9 in the middle of a group's write leaves: the records before it whole, then a
// part of one. That part was never acknowledged (its fdatasync had not returned): cut off.
TEST_F(InboxTest, AGroupTornByACrashIsCutOffAndTheRestKept) {
  ASSERT_NO_FATAL_FAILURE(WriteAndClose(3, 0));
  const auto segment = Segments().at(0);
  const auto whole = std::filesystem::file_size(segment);
  {
    std::ofstream out(segment, std::ios::binary | std::ios::app);
    out << std::string("\x40\x00\x00\x00\x11\x22", 6);  // a length, half a checksum
  }
  auto inbox = Open(0);
  ASSERT_TRUE(inbox);
  EXPECT_EQ(std::filesystem::file_size(segment), whole);
  EXPECT_EQ(Rows(*inbox), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(Append(*inbox, 1).front(), 4);
  inbox->Close();
  auto again = Open(0);
  ASSERT_TRUE(again);
  EXPECT_EQ(Rows(*again), (std::vector<int64_t>{1, 2, 3, 4}));
  again->Close();
}

// A full disk (here the process's file size limit): the group that does not fit is refused and
// cut off the file, the ids it had are given again, and what follows is read back whole.
TEST_F(InboxTest, AGroupThatDoesNotFitIsRefusedAndCutOff) {
  auto inbox = Open(0);
  ASSERT_TRUE(inbox);
  Append(*inbox, 1);
  // The five below must be one group: a failed group sends the next one to a new segment,
  // where a group of one or two records fits under the limit and is rightly written.
  HeldWriter held(*inbox, Track(1));
  const auto segment = Segments().at(0);
  const auto whole = std::filesystem::file_size(segment);
  int refused = 0;
  {
    FileSizeLimit limit(whole + 20);  // room for part of a record, not all of it
    ASSERT_TRUE(limit.ok());
    Pending pending = Queue(*inbox, {Track(0), Track(1), Track(2), Track(3), Track(4)});
    held.Release();
    for (const auto& id : Wait(std::move(pending))) {
      if (!id) {
        ++refused;
        EXPECT_EQ(id.error().code(), Code::kUnavailable) << id.error().ToString();
      }
    }
  }
  EXPECT_EQ(refused, 5);
  EXPECT_EQ(std::filesystem::file_size(segment), whole) << "the part written is cut off";
  EXPECT_EQ(Append(*inbox, 2), (std::vector<int64_t>{3, 4})) << "the refused ids are given again";
  inbox->Close();
  auto again = Open(0);
  ASSERT_TRUE(again);
  EXPECT_EQ(Rows(*again), (std::vector<int64_t>{1, 2, 3, 4}));
  again->Close();
}

// A group that failed (a full disk) and could not be cut off stays in its segment, and the
// next segment starts at the same id: it was never acknowledged, so it is no damage.
TEST_F(InboxTest, AFailedGroupLeftInAnOlderSegmentIsNotDamage) {
  ASSERT_NO_FATAL_FAILURE(WriteAndClose(2, 0));
  const auto first = Segments().at(0);
  {
    std::ofstream out(first, std::ios::binary | std::ios::app);
    out << std::string("\x40\x00\x00\x00\x11\x22\x33\x44 a failed group");
  }
  ASSERT_NO_FATAL_FAILURE(AddNextSegment(2, {Track(0), Track(1)}));
  ASSERT_EQ(Segments().size(), 2u);
  auto inbox = Open(0);
  ASSERT_TRUE(inbox);
  EXPECT_EQ(Rows(*inbox), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(Append(*inbox, 1).front(), 5);
  inbox->Close();
}

// ... and so is one written whole whose fdatasync failed, when cutting it off did not reach
// the disk: its records are dropped for those the next segment holds under the same ids.
TEST_F(InboxTest, AFailedGroupWrittenWholeInAnOlderSegmentGivesWayToTheNext) {
  ASSERT_NO_FATAL_FAILURE(WriteAndClose(4, 0));  // 1-4: 3 and 4 stand for the failed group
  const auto first = Segments().at(0);
  ASSERT_NO_FATAL_FAILURE(AddNextSegment(2, {Track(10), Track(11), Track(12)}));
  ASSERT_EQ(Segments().size(), 2u);
  const auto before = std::filesystem::file_size(first);
  auto inbox = Open(0);
  ASSERT_TRUE(inbox);
  const auto records = Records(*inbox);
  std::vector<std::pair<int64_t, int64_t>> got;
  for (const auto& r : records) got.emplace_back(r.id, r.received_at);
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, int64_t>>{
                     {1, 1000}, {2, 1001}, {3, 1010}, {4, 1011}, {5, 1012}}));
  EXPECT_LT(std::filesystem::file_size(first), before);
  EXPECT_EQ(Append(*inbox, 1).front(), 6);
  inbox->Close();
}

// A damaged byte in a record that was acknowledged is not cut off silently: open fails,
// naming the file and the place.
TEST_F(InboxTest, ADamagedAcknowledgedRecordIsRefusedWithItsPlace) {
  {
    auto inbox = Open(0, /*segment_bytes=*/64);
    ASSERT_TRUE(inbox);
    Append(*inbox, 1);
    Append(*inbox, 1);
    inbox->Close();
  }
  const auto first = Segments().at(0);
  {
    std::fstream f(first, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(40);
    f.put('X');
  }
  auto inbox = TryOpen(0);
  ASSERT_FALSE(inbox);
  EXPECT_NE(inbox.error().message().find(first.filename().string()), std::string::npos)
      << inbox.error().ToString();
  EXPECT_NE(inbox.error().message().find("damaged at byte 8"), std::string::npos)
      << inbox.error().ToString();
}

// Damage in the segment being written is told from a group torn by a crash: a whole record of
// a later group after the bad spot shows that the spot's group was durable, so acknowledged.
TEST_F(InboxTest, DamageBeforeALaterGroupInTheNewestSegmentIsRefused) {
  {
    auto inbox = Open(0);
    ASSERT_TRUE(inbox);
    for (int i = 0; i < 3; ++i) Append(*inbox, 2);  // three groups, one segment
    inbox->Close();
  }
  ASSERT_EQ(Segments().size(), 1u);
  const auto segment = Segments().at(0);
  const auto size = std::filesystem::file_size(segment);
  {
    std::fstream f(segment, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(40);  // inside record 1, of the first group
    f.put('X');
  }
  auto inbox = TryOpen(0);
  ASSERT_FALSE(inbox) << "records 1 to 6 were acknowledged";
  EXPECT_NE(inbox.error().message().find("damaged at byte 8"), std::string::npos)
      << inbox.error().ToString();
  EXPECT_EQ(std::filesystem::file_size(segment), size) << "nothing cut off";
}

TEST_F(InboxTest, ANewestSegmentWithRecordsAndABadHeaderIsRefused) {
  ASSERT_NO_FATAL_FAILURE(WriteAndClose(2, 0));
  const auto segment = Segments().at(0);
  {
    std::fstream f(segment, std::ios::binary | std::ios::in | std::ios::out);
    f.put('X');
  }
  auto inbox = TryOpen(0);
  ASSERT_FALSE(inbox);
  EXPECT_NE(inbox.error().message().find("not an inbox segment"), std::string::npos)
      << inbox.error().ToString();
  EXPECT_TRUE(std::filesystem::exists(segment));
}

// An earlier version ran after this one (a downgrade, then an upgrade again): its inbox.db
// continues from the store's mark, past an applied segment this version left.
TEST_F(InboxTest, AnEarlierVersionsInboxAfterAnAppliedSegmentIsMovedIn) {
  {
    auto inbox = Open(10);
    ASSERT_TRUE(inbox);
    Append(*inbox, 5);  // 11 to 15, applied below
    inbox->Close();
  }
  const std::string legacy = (dir_ / "inbox.db").string();
  ASSERT_NO_FATAL_FAILURE(MakeLegacyInbox(
      legacy, "(20, 1, '/v1/track', 5, 'applied'), (21, 1, '/v1/track', 6, 'left')"));
  auto inbox = TryOpen(20, 32 << 20, legacy);
  ASSERT_TRUE(inbox) << inbox.error().ToString();
  EXPECT_EQ(Rows(**inbox, 20), std::vector<int64_t>{21});
  EXPECT_EQ(Append(**inbox, 1).front(), 22);
  (*inbox)->Close();
}

// A disk that fills while an earlier version's inbox is moved in: the start fails, inbox.db
// stays, and the next start moves the rest in after what was written, each request once.
TEST_F(InboxTest, AMoveThatFailsHalfwayIsFinishedAtTheNextStart) {
  const std::string legacy = (dir_ / "inbox.db").string();
  ASSERT_NO_FATAL_FAILURE(MakeLegacyInbox(legacy,
                                          "(1, 1, '/v1/track', 5, printf('%.1000c', 'a')), "
                                          "(2, 1, '/v1/track', 6, printf('%.1000c', 'b')), "
                                          "(3, 1, '/v1/track', 7, printf('%.1000c', 'c'))"));
  auto open = [&] {
    return Inbox::Open({.path = Dir().string(),
                        .legacy_path = legacy,
                        .applied = 0,
                        .max_bytes_per_commit = 1000});  // a group per row
  };
  {
    // Room for the header and the first row's record (1,043 bytes), not the second's. A failed
    // group sends the next one to a segment of its own: the move must stop at the second row
    // rather than write the third there with the second's id.
    FileSizeLimit limit(8 + 1043 + 60);
    ASSERT_TRUE(limit.ok());
    ASSERT_FALSE(open());
  }
  EXPECT_TRUE(std::filesystem::exists(legacy));
  auto inbox = open();
  ASSERT_TRUE(inbox) << inbox.error().ToString();
  EXPECT_FALSE(std::filesystem::exists(legacy));
  std::string firsts;
  std::vector<int64_t> ids;
  for (const auto& r : Records(**inbox)) {
    ids.push_back(r.id);
    firsts += r.body.substr(0, 1);
  }
  EXPECT_EQ(ids, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(firsts, "abc");
  (*inbox)->Close();
}

// An inbox.db of an earlier version that holds no table (it stopped right after creating the
// file) holds nothing: removed, not refused.
TEST_F(InboxTest, AnEmptyEarlierInboxIsRemoved) {
  const std::string legacy = (dir_ / "inbox.db").string();
  std::ofstream(legacy).close();
  auto inbox = TryOpen(0, 32 << 20, legacy);
  ASSERT_TRUE(inbox) << inbox.error().ToString();
  EXPECT_FALSE(std::filesystem::exists(legacy));
  (*inbox)->Close();
  std::ofstream(legacy) << "not a database at all, and long enough to be read as one";
  auto refused = TryOpen(0, 32 << 20, legacy);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find(legacy), std::string::npos)
      << refused.error().ToString();
}

TEST_F(InboxTest, AFileWhereTheDirectoryShouldBeIsNamed) {
  std::ofstream(Dir()) << "x";
  auto inbox = TryOpen(0);
  ASSERT_FALSE(inbox);
  EXPECT_NE(inbox.error().message().find("is not a directory"), std::string::npos)
      << inbox.error().ToString();
}

// An inbox of an earlier version (a SQLite table in inbox.db) is moved into the log, once.
TEST_F(InboxTest, AnEarlierVersionsInboxIsMovedIn) {
  const std::string legacy = (dir_ / "inbox.db").string();
  ASSERT_NO_FATAL_FAILURE(MakeLegacyInbox(legacy,
                                          "(41, 1, '/v1/track', 5, 'applied'), "
                                          "(42, 1, '/v1/track', 6, 'left'), "
                                          "(43, 2, '/v1/batch', 7, x'00ff')"));
  auto inbox = TryOpen(41, 32 << 20, legacy);
  ASSERT_TRUE(inbox) << inbox.error().ToString();
  EXPECT_FALSE(std::filesystem::exists(legacy));
  const auto seen = Records(**inbox, 41);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].id, 42);
  EXPECT_EQ(seen[0].body, "left");
  EXPECT_FALSE(seen[0].compressed);
  EXPECT_EQ(seen[1].id, 43);
  EXPECT_EQ(seen[1].workspace, 2);
  EXPECT_EQ(seen[1].body, std::string("\0\xff", 2));
  EXPECT_TRUE(seen[1].compressed);
  EXPECT_EQ(Append(**inbox, 1).front(), 44);
  (*inbox)->Close();
}

// A directory the server may not write in (another user's, or immutable) is refused at open,
// naming it, rather than failing every request afterwards.
TEST_F(InboxTest, AnUnwritableDirectoryIsRefusedAtOpen) {
  std::filesystem::create_directories(Dir());
  const bool root = geteuid() == 0;
  if (root) {
    if (!testing::SetImmutable(Dir(), true))
      GTEST_SKIP() << "the file system has no immutable flag";
  } else {
    std::filesystem::permissions(
        Dir(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  }
  auto inbox = TryOpen(0);
  if (root) {
    testing::SetImmutable(Dir(), false);
  } else {
    std::filesystem::permissions(Dir(), std::filesystem::perms::owner_all);
  }
  ASSERT_FALSE(inbox);
  EXPECT_NE(inbox.error().message().find(Dir().string()), std::string::npos)
      << inbox.error().ToString();
}

}  // namespace
}  // namespace nudge::store
