// Stmt's bindings: strings the caller holds are bound without a copy, temporaries are copied,
// and a parameter a use leaves unbound is NULL, whatever an earlier use of the cached
// statement bound.
#include "store/sqlite/db.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

#include "store/test_files.h"

namespace nudge::store::sqlite {
namespace {

namespace fs = std::filesystem;

class DbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = fs::temp_directory_path() / ("nudge-db-test-" + std::to_string(getpid()) + ".db");
    fs::remove(path_);
    auto db = Db::Open(path_.string(), /*read_only=*/false);
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    ASSERT_TRUE(db_->Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT, c BLOB)").ok());
  }
  void TearDown() override {
    db_.reset();
    fs::remove(path_);
  }

  Status Insert(int64_t id, const std::optional<std::string>& a, std::string b) {
    NUDGE_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare("INSERT INTO t(id, a, b) VALUES(?, ?, ?)"));
    StmtUse q(*s);
    q->Bind(1, id);
    if (a) q->Bind(2, *a);  // left unbound otherwise
    q->Bind(3, std::move(b));
    return q->Exec();
  }

  // "a|b" of the row, NULL shown as "-".
  std::string Row(int64_t id) {
    auto s = db_->Prepare("SELECT coalesce(a, '-') || '|' || coalesce(b, '-') FROM t WHERE id = ?");
    EXPECT_TRUE(s);
    StmtUse q(**s);
    q->Bind(1, id);
    auto row = q->Step();
    EXPECT_TRUE(row && *row);
    return q->Text(0);
  }

  fs::path path_;
  std::unique_ptr<Db> db_;
};

// A file the process may read but not write is refused when opened for writing, rather than
// opened read-only (SQLite's fallback) to fail every write later.
TEST_F(DbTest, AFileThatCannotBeWrittenIsRefusedAtOpen) {
  db_.reset();
  // Root writes a file whatever its mode: it is made immutable instead (ext4 and most others).
  const bool root = geteuid() == 0;
  if (root) {
    if (!testing::SetImmutable(path_, true))
      GTEST_SKIP() << "the file system has no immutable flag";
  } else {
    fs::permissions(path_, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  }
  auto db = Db::Open(path_.string(), /*read_only=*/false);
  const bool readable = static_cast<bool>(Db::Open(path_.string(), /*read_only=*/true));
  if (root) testing::SetImmutable(path_, false);
  ASSERT_FALSE(db);
  EXPECT_NE(db.error().message().find("for writing"), std::string::npos) << db.error().ToString();
  EXPECT_TRUE(readable);
}

TEST_F(DbTest, AParameterLeftUnboundIsNullEvenAfterAUseThatBoundIt) {
  ASSERT_TRUE(Insert(1, std::string("first"), "x").ok());
  ASSERT_TRUE(Insert(2, std::nullopt, "y").ok());
  EXPECT_EQ(Row(1), "first|x");
  EXPECT_EQ(Row(2), "-|y");
}

TEST_F(DbTest, HeldStringsAreReadWhenTheStatementRunsAndTemporariesAreCopied) {
  {
    auto s = db_->Prepare("INSERT INTO t(id, a, b, c) VALUES(?, ?, ?, ?)");
    ASSERT_TRUE(s);
    StmtUse q(**s);
    const std::string held(5000, 'h');  // longer than any small-string buffer
    q->Bind(1, int64_t{3}).Bind(2, held);
    q->Bind(3, std::string(4000, 't'));  // destroyed before the statement runs
    q->BindBlob(4, std::string("\0z", 2));
    ASSERT_TRUE(q->Exec().ok());
  }
  auto s = db_->Prepare(
      "SELECT length(a), substr(a, 1, 1), length(b), substr(b, 4000, 1), hex(c) "
      "FROM t WHERE id = 3");
  ASSERT_TRUE(s);
  StmtUse q(**s);
  auto row = q->Step();
  ASSERT_TRUE(row && *row);
  EXPECT_EQ(q->Int(0), 5000);
  EXPECT_EQ(q->Text(1), "h");
  EXPECT_EQ(q->Int(2), 4000);
  EXPECT_EQ(q->Text(3), "t");
  EXPECT_EQ(q->Text(4), "007A");
}

TEST_F(DbTest, AStatementWithMoreThanSixtyFourParametersStillNullsWhatAUseLeaves) {
  std::string cols = "id", values = "?";
  for (int i = 1; i <= 69; ++i) {
    cols += ", x" + std::to_string(i);
    values += ", ?";
  }
  ASSERT_TRUE(db_->Exec(("CREATE TABLE wide(" + cols + ")").c_str()).ok());
  static const std::string sql = "INSERT INTO wide(" + cols + ") VALUES(" + values + ")";
  for (int64_t id = 1; id <= 2; ++id) {
    auto s = db_->Prepare(sql.c_str());
    ASSERT_TRUE(s);
    StmtUse q(**s);
    q->Bind(1, id);
    if (id == 1) q->Bind(70, "last").Bind(2, "first");
    ASSERT_TRUE(q->Exec().ok());
  }
  auto s = db_->Prepare("SELECT count(*) FROM wide WHERE id = 2 AND x1 IS NULL AND x69 IS NULL");
  ASSERT_TRUE(s);
  StmtUse q(**s);
  auto row = q->Step();
  ASSERT_TRUE(row && *row);
  EXPECT_EQ(q->Int(0), 1);
}

// Memory statistics stay off once a connection is open (they put a global mutex around every
// allocation SQLite makes): the writer pays for no lock it does not need.
TEST_F(DbTest, OpeningAConnectionLeavesSqliteMemoryStatisticsOff) {
  EXPECT_TRUE(ConfigureLibrary());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(Insert(i, "a", std::string(2000, 'b')).ok());
  sqlite3_int64 used = -1, highwater = -1;
  ASSERT_EQ(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &used, &highwater, 0), SQLITE_OK);
  EXPECT_EQ(used, 0) << "SQLite counts its memory: statistics are on";
}

}  // namespace
}  // namespace nudge::store::sqlite
