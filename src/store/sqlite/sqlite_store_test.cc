#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "store/sqlite/listing_sql.h"
#include "store/store.h"

namespace nudge::store {
namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nudge_store_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto s = OpenSqliteStore({.path = (dir_ / "nudge.db").string()});
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
  }
  WorkspaceId MakeWorkspace(const std::string& name) {
    WorkspaceId id = 0;
    Status s = store_->WriteSync([&](WriteTxn& t) -> Status {
      auto r = t.InsertWorkspace({0, name, "w" + name, "a" + name, 1});
      if (!r) return r.error();
      id = *r;
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return id;
  }

  // The database file opened directly, the store closed; the caller closes it.
  sqlite3* OpenRaw() {
    store_.reset();
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open((dir_ / "nudge.db").c_str(), &db), SQLITE_OK);
    return db;
  }
  // EXPLAIN QUERY PLAN of `sql` on the database file, a line per step.
  std::vector<std::string> QueryPlan(const char* sql) {
    sqlite3* db = OpenRaw();
    const std::string explain = std::string("EXPLAIN QUERY PLAN ") + sql;
    sqlite3_stmt* q = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, explain.c_str(), -1, &q, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    std::vector<std::string> plan;
    while (q && sqlite3_step(q) == SQLITE_ROW)
      plan.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 3)));
    sqlite3_finalize(q);
    sqlite3_close(db);
    return plan;
  }
  // Runs SQL on the database file directly (to build an older schema).
  void ExecRaw(const char* sql) {
    sqlite3* db = OpenRaw();
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }
  // The integer a query on the database file returns.
  int64_t RawInt(const char* sql) {
    sqlite3* db = OpenRaw();
    sqlite3_stmt* q = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &q, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    const int64_t v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

// A journey's per-step counts as "step/outcome" -> count.
std::map<std::string, int64_t> StepCounts(ReadTxn& t, WorkspaceId ws, std::string_view journey) {
  std::map<std::string, int64_t> out;
  auto counts = t.JourneyStepCounts(ws, journey);
  EXPECT_TRUE(counts) << counts.error().ToString();
  if (counts)
    for (const auto& c : *counts) out[c.step + "/" + c.outcome] = c.count;
  return out;
}

TEST_F(SqliteStoreTest, EventsAreDeduplicatedByMessageIdPerWorkspace) {
  const WorkspaceId a = MakeWorkspace("a"), b = MakeWorkspace("b");
  int inserted = 0;
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    for (WorkspaceId ws : {a, a, b}) {
                      Contact c;
                      c.workspace = ws;
                      auto id = t.InsertContact(c);
                      if (!id) return id.error();
                      Event e{0, ws, *id, "m1", "track", "Signed Up", 10, 10, "{}"};
                      auto r = t.InsertEvent(e);
                      if (!r) return r.error();
                      inserted += *r;
                    }
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(inserted, 2);  // the second "m1" in workspace a is a duplicate
}

TEST_F(SqliteStoreTest, AFailedWriteLeavesNoTraceAndSparesItsGroup) {
  const WorkspaceId ws = MakeWorkspace("a");
  std::atomic<int> done{0};
  Status bad, good;
  store_->Write(
      [&](WriteTxn& t) -> Status {
        Contact c;
        c.workspace = ws;
        c.user_id = "ghost";
        auto r = t.InsertContact(c);
        if (!r) return r.error();
        return Status::Invalid("refused after writing");
      },
      [&](Status s) {
        bad = s;
        ++done;
      });
  store_->Write(
      [&](WriteTxn& t) -> Status {
        Contact c;
        c.workspace = ws;
        c.user_id = "kept";
        auto r = t.InsertContact(c);
        return r ? Status::Ok() : r.error();
      },
      [&](Status s) {
        good = s;
        ++done;
      });
  while (done < 2) std::this_thread::yield();
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_TRUE(good.ok());
  ASSERT_TRUE(store_
                  ->Read([&](ReadTxn& t) -> Status {
                    EXPECT_FALSE(*t.FindContactByUserId(ws, "ghost"));
                    EXPECT_TRUE(*t.FindContactByUserId(ws, "kept"));
                    return Status::Ok();
                  })
                  .ok());
}

// Writes queued with Isolation::kWithGroup share their group's fate: one failing undoes the
// writes before it, the ones after it never run, and each is told so; writes of the other kind
// queued beside them are grouped apart and kept.
TEST_F(SqliteStoreTest, AFailedWriteWithItsGroupRollsTheGroupBackAndSparesTheOtherKind) {
  const WorkspaceId ws = MakeWorkspace("a");
  auto insert = [ws](const std::string& user) {
    return [ws, user](WriteTxn& t) -> Status {
      Contact c;
      c.workspace = ws;
      c.user_id = user;
      auto r = t.InsertContact(c);
      return r ? Status::Ok() : r.error();
    };
  };
  // Hold the writer so that everything below is queued before it takes its next group.
  std::atomic<bool> holding{false}, release{false};
  std::atomic<int> done{0};
  store_->Write(
      [&](WriteTxn&) -> Status {
        holding = true;
        while (!release) std::this_thread::yield();
        return Status::Ok();
      },
      [&](Status) { ++done; });
  while (!holding) std::this_thread::yield();
  std::map<std::string, Status> result;
  std::atomic<bool> after_ran{false};
  auto record = [&](const std::string& name) {
    return [&, name](Status s) {
      result[name] = s;
      ++done;
    };
  };
  using I = Store::Isolation;
  store_->Write(insert("before"), record("before"), I::kWithGroup);
  store_->Write(
      [&](WriteTxn& t) -> Status {
        NUDGE_TRY(insert("failing")(t));
        return Status::Invalid("refused after writing");
      },
      record("failing"), I::kWithGroup);
  store_->Write(
      [&](WriteTxn& t) -> Status {
        after_ran = true;
        return insert("after")(t);
      },
      record("after"), I::kWithGroup);
  store_->Write(insert("alone"), record("alone"), I::kAlone);
  release = true;
  while (done < 5) std::this_thread::yield();
  EXPECT_EQ(result["failing"].code(), Code::kInvalidArgument);
  EXPECT_EQ(result["before"].code(), Code::kUnavailable) << result["before"].ToString();
  EXPECT_EQ(result["after"].code(), Code::kUnavailable);
  EXPECT_FALSE(after_ran);
  EXPECT_TRUE(result["alone"].ok()) << result["alone"].ToString();
  // Handed again without the failed one, the others are kept.
  std::atomic<int> again{0};
  for (const char* user : {"before", "after"})
    store_->Write(
        insert(user),
        [&](Status s) {
          EXPECT_TRUE(s.ok()) << s.ToString();
          ++again;
        },
        I::kWithGroup);
  while (again < 2) std::this_thread::yield();
  ASSERT_TRUE(store_
                  ->Read([&](ReadTxn& t) -> Status {
                    EXPECT_FALSE(*t.FindContactByUserId(ws, "failing"));
                    EXPECT_TRUE(*t.FindContactByUserId(ws, "before"));
                    EXPECT_TRUE(*t.FindContactByUserId(ws, "after"));
                    EXPECT_TRUE(*t.FindContactByUserId(ws, "alone"));
                    return Status::Ok();
                  })
                  .ok());
}

// The step log keeps each instance's entries in order across writes and groups, counts them per
// step and outcome, and drops those of a write that failed.
TEST_F(SqliteStoreTest, StepLogKeepsOrderAndCountsAndForgetsAFailedWrite) {
  const WorkspaceId ws = MakeWorkspace("a");
  Instance one, two;
  one.id = 7;
  two.id = 8;
  one.workspace = two.workspace = ws;
  one.journey = two.journey = "welcome";
  std::atomic<int> done{0};
  Status failed;
  auto write = [&](std::vector<std::tuple<Instance*, std::string, std::string>> entries,
                   bool fail) {
    store_->Write(
        [entries, fail](WriteTxn& t) -> Status {
          Millis at = 100;
          for (const auto& [inst, step, outcome] : entries)
            NUDGE_TRY(t.LogStep(*inst, step, outcome, at++));
          return fail ? Status::Invalid("refused after logging") : Status::Ok();
        },
        [&, fail](Status s) {
          if (fail) failed = s;
          ++done;
        });
  };
  write({{&one, "pause", "entered"},
         {&two, "pause", "entered"},
         {&one, "pause", "completed"},
         {&one, "send \"a\"", "entered"}},
        false);
  write({{&one, "ghost", "entered"}, {&two, "ghost", "entered"}}, true);
  write({{&two, "pause", "completed"}, {&one, "send \"a\"", "sent"}}, false);
  while (done < 3) std::this_thread::yield();
  EXPECT_EQ(failed.code(), Code::kInvalidArgument);
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    // Inside a write: what it logged so far is read back too.
                    NUDGE_TRY(t.LogStep(two, "last", "entered", 500));
                    auto steps = t.InstanceSteps(8);
                    EXPECT_TRUE(steps);
                    EXPECT_EQ(steps->size(), 3u);
                    EXPECT_EQ(StepCounts(t, ws, "welcome")["last/entered"], 1);
                    return Status::Ok();
                  })
                  .ok());
  Reopen();
  using Entry = std::tuple<std::string, std::string, Millis>;
  ASSERT_TRUE(store_
                  ->Read([&](ReadTxn& t) -> Status {
                    auto a = t.InstanceSteps(7);
                    EXPECT_TRUE(a);
                    EXPECT_EQ(*a, (std::vector<Entry>{{"pause", "entered", 100},
                                                      {"pause", "completed", 102},
                                                      {"send \"a\"", "entered", 103},
                                                      {"send \"a\"", "sent", 101}}));
                    auto b = t.InstanceSteps(8);
                    EXPECT_TRUE(b);
                    EXPECT_EQ(*b, (std::vector<Entry>{{"pause", "entered", 101},
                                                      {"pause", "completed", 100},
                                                      {"last", "entered", 500}}));
                    EXPECT_EQ(StepCounts(t, ws, "welcome"),
                              (std::map<std::string, int64_t>{{"last/entered", 1},
                                                              {"pause/completed", 2},
                                                              {"pause/entered", 2},
                                                              {"send \"a\"/entered", 1},
                                                              {"send \"a\"/sent", 1}}));
                    return Status::Ok();
                  })
                  .ok());
}

// Whether the file holds `needle` (a missing file holds nothing).
bool FileHolds(const std::filesystem::path& path, std::string_view needle) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes.find(needle) != std::string::npos;
}

// Twenty contacts, one of them (returned) with a secret in its traits and its event.
ContactId ContactsWithASecret(Store& store, WorkspaceId ws, std::string_view secret) {
  ContactId gone = 0;
  EXPECT_TRUE(store
                  .WriteSync([&](WriteTxn& t) -> Status {
                    for (int k = 0; k < 20; ++k) {
                      Contact c;
                      c.workspace = ws;
                      c.user_id = "user-" + std::to_string(k);
                      c.traits = k == 7 ? R"({"note":")" + std::string(secret) + "\"}"
                                        : R"({"note":"plain"})";
                      NUDGE_ASSIGN_OR_RETURN(ContactId id, t.InsertContact(c));
                      Event e;
                      e.workspace = ws;
                      e.contact = id;
                      e.message_id = "m" + std::to_string(k);
                      e.type = "track";
                      e.name = "Viewed";
                      e.body =
                          k == 7 ? R"({"properties":{"q":")" + std::string(secret) + "\"}}" : "{}";
                      NUDGE_TRY(t.InsertEvent(e));
                      if (k == 7) gone = id;
                    }
                    return Status::Ok();
                  })
                  .ok());
  return gone;
}

// What an erased contact held does not stay readable in the database file: its bytes are
// overwritten where they were (the contact among others that stay, in the same pages).
TEST_F(SqliteStoreTest, AnErasedContactsBytesLeaveTheFile) {
  const WorkspaceId ws = MakeWorkspace("a");
  const ContactId gone = ContactsWithASecret(*store_, ws, "ZED-SECRET-4711");
  ASSERT_TRUE(store_->WriteSync([&](WriteTxn& t) { return t.DeleteContact(gone); }).ok());
  store_.reset();  // a clean stop folds the log back into the file and removes it
  ASSERT_TRUE(std::filesystem::file_size(dir_ / "nudge.db") > 0);
  EXPECT_FALSE(FileHolds(dir_ / "nudge.db", "ZED-SECRET-4711"));
  EXPECT_TRUE(FileHolds(dir_ / "nudge.db", "user-8")) << "the others stay";
}

// While the server runs, the log (WAL) holds the pages an erased contact's rows were written
// in, as they were before the erasure: the erasure is answered once the log is folded back and
// emptied, so neither file holds them any more.
TEST_F(SqliteStoreTest, AnErasedContactsBytesLeaveTheLogBeforeTheErasureIsAnswered) {
  const WorkspaceId ws = MakeWorkspace("a");
  const ContactId gone = ContactsWithASecret(*store_, ws, "ZED-SECRET-4711");
  ASSERT_TRUE(FileHolds(dir_ / "nudge.db-wal", "ZED-SECRET-4711")) << "written to the log";
  ASSERT_TRUE(store_->WriteSync([&](WriteTxn& t) { return t.DeleteContact(gone); }).ok());
  EXPECT_FALSE(FileHolds(dir_ / "nudge.db-wal", "ZED-SECRET-4711"));
  EXPECT_FALSE(FileHolds(dir_ / "nudge.db", "ZED-SECRET-4711"));
  EXPECT_TRUE(FileHolds(dir_ / "nudge.db", "user-8")) << "the others stay";
  // And the store goes on: a write after it lands in a new log.
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    Contact c;
                    c.workspace = ws;
                    c.user_id = "user-after";
                    auto id = t.InsertContact(c);
                    return id ? Status::Ok() : id.error();
                  })
                  .ok());
  ASSERT_TRUE(store_
                  ->Read([&](ReadTxn& t) -> Status {
                    auto c = t.FindContactByUserId(ws, "user-after");
                    EXPECT_TRUE(c && *c);
                    auto g = t.GetContact(gone);
                    EXPECT_TRUE(g && !*g);
                    return Status::Ok();
                  })
                  .ok());
}

// A reader still on the log when the erasure commits keeps the log from being emptied then; it
// is emptied once the reader is done, with no other write needed.
TEST_F(SqliteStoreTest, AReaderOnTheLogPutsTheErasuresPurgeOffUntilItIsDone) {
  const WorkspaceId ws = MakeWorkspace("a");
  const ContactId gone = ContactsWithASecret(*store_, ws, "ZED-SECRET-4711");
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "nudge.db").c_str(), &reader), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM contacts;", nullptr, nullptr, nullptr),
      SQLITE_OK);
  ASSERT_TRUE(store_->WriteSync([&](WriteTxn& t) { return t.DeleteContact(gone); }).ok());
  EXPECT_TRUE(FileHolds(dir_ / "nudge.db-wal", "ZED-SECRET-4711")) << "the reader's snapshot";
  ASSERT_EQ(sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(reader);
  bool purged = false;
  for (int i = 0; i < 100 && !purged; ++i) {  // the checkpointer comes back every second
    purged = !FileHolds(dir_ / "nudge.db-wal", "ZED-SECRET-4711");
    if (!purged) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(purged) << "the log still holds the erased contact 5 s after the reader left";
  EXPECT_FALSE(FileHolds(dir_ / "nudge.db", "ZED-SECRET-4711"));
}

// Erasing a contact takes its instances' step log with them; the per-step counts stay.
TEST_F(SqliteStoreTest, ErasureTakesTheStepLogAndKeepsTheCounts) {
  const WorkspaceId ws = MakeWorkspace("a");
  int64_t kept = 0, erased = 0;
  ContactId gone = 0;
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    for (int k = 0; k < 2; ++k) {
                      Contact c;
                      c.workspace = ws;
                      c.user_id = k == 0 ? "stays" : "goes";
                      NUDGE_ASSIGN_OR_RETURN(ContactId id, t.InsertContact(c));
                      Instance i;
                      i.workspace = ws;
                      i.journey = "welcome";
                      i.version = 1;
                      i.contact = id;
                      i.status = "active";
                      NUDGE_ASSIGN_OR_RETURN(i.id, t.InsertInstance(i));
                      NUDGE_TRY(t.LogStep(i, "pause", "entered", 10));
                      (k == 0 ? kept : erased) = i.id;
                      if (k == 1) gone = id;
                    }
                    return Status::Ok();
                  })
                  .ok());
  ASSERT_TRUE(store_->WriteSync([&](WriteTxn& t) { return t.DeleteContact(gone); }).ok());
  ASSERT_TRUE(store_
                  ->Read([&](ReadTxn& t) -> Status {
                    EXPECT_EQ(t.InstanceSteps(kept)->size(), 1u);
                    EXPECT_TRUE(t.InstanceSteps(erased)->empty());
                    EXPECT_EQ(StepCounts(t, ws, "welcome"),
                              (std::map<std::string, int64_t>{{"pause/entered", 2}}));
                    return Status::Ok();
                  })
                  .ok());
}

// A journey's entry rules learn from the contact's past instances whether there is one,
// whether this very trigger started one, and when the newest was entered: of that contact and
// journey only, whatever their status.
TEST_F(SqliteStoreTest, EntryPastIsOfTheContactAndJourney) {
  const WorkspaceId ws = MakeWorkspace("a");
  ContactId ann = 0, bob = 0;
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    for (const char* user : {"ann", "bob"}) {
                      Contact c;
                      c.workspace = ws;
                      c.user_id = user;
                      NUDGE_ASSIGN_OR_RETURN(ContactId id, t.InsertContact(c));
                      (std::string(user) == "ann" ? ann : bob) = id;
                    }
                    // ann: three of "welcome" (entered at 30, 10, 20; one still running) and
                    // one of "winback".
                    const std::tuple<const char*, Millis, const char*, const char*> rows[] = {
                        {"welcome", 30, "event:7", "completed"},
                        {"welcome", 10, "event:3", "exited"},
                        {"welcome", 20, "date:5", "active"},
                        {"winback", 90, "event:9", "completed"}};
                    for (const auto& [journey, at, key, status] : rows) {
                      Instance i;
                      i.workspace = ws;
                      i.journey = journey;
                      i.version = 1;
                      i.contact = ann;
                      i.status = status;
                      i.entered_at = i.updated_at = at;
                      i.trigger_key = key;
                      NUDGE_ASSIGN_OR_RETURN(i.id, t.InsertInstance(i));
                    }
                    return Status::Ok();
                  })
                  .ok());
  auto past = [&](ContactId c, const char* journey, const char* key, bool last) {
    std::optional<ReadTxn::EntryPast> out;
    EXPECT_TRUE(store_
                    ->Read([&](ReadTxn& t) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(out, t.EntryPastOf(c, journey, key, last));
                      return Status::Ok();
                    })
                    .ok());
    return out.value_or(ReadTxn::EntryPast{});
  };
  auto p = past(ann, "welcome", "event:3", true);
  EXPECT_TRUE(p.any);
  EXPECT_TRUE(p.same_trigger);
  EXPECT_EQ(p.last_entered_at, 30);
  p = past(ann, "welcome", "event:9", true);  // ann's "winback" trigger, not "welcome"'s
  EXPECT_TRUE(p.any);
  EXPECT_FALSE(p.same_trigger);
  EXPECT_EQ(p.last_entered_at, 30);
  p = past(ann, "winback", "date:5", false);
  EXPECT_TRUE(p.any);
  EXPECT_FALSE(p.same_trigger);
  p = past(bob, "welcome", "event:3", true);
  EXPECT_FALSE(p.any);
  EXPECT_FALSE(p.same_trigger);
}

// ... and reads them from the contact's entries in an index, never the rows: the whole history
// was read on every entry, which an `every_time` journey made grow without bound.
TEST_F(SqliteStoreTest, EntryPastReadsOnlyTheIndex) {
  int searches = 0;
  for (const auto& line : QueryPlan(sqlite::kEntryPast)) {
    if (line.find("journey_instances") == std::string::npos) continue;
    ++searches;
    EXPECT_NE(line.find("SEARCH journey_instances USING COVERING INDEX journey_instances_contact"),
              std::string::npos)
        << line;
  }
  EXPECT_EQ(searches, 3);
}

// A database from before the compact step log (schema 5: one row per entry) keeps its entries,
// in order, and its counts.
TEST_F(SqliteStoreTest, StepLogRowsOfSchemaFiveMoveOver) {
  const WorkspaceId ws = MakeWorkspace("a");
  ExecRaw(R"sql(
      DROP VIEW journey_steps; DROP TABLE journey_step_log; DROP TABLE journey_step_counts;
      CREATE TABLE journey_steps(instance_id INTEGER NOT NULL, ws INTEGER NOT NULL,
        journey TEXT NOT NULL, version INTEGER NOT NULL, step TEXT NOT NULL,
        outcome TEXT NOT NULL, at INTEGER NOT NULL);
      INSERT INTO journey_steps VALUES(3, 1, 'welcome', 1, 'pause', 'entered', 20),
        (4, 1, 'welcome', 1, 'pause', 'entered', 21), (3, 1, 'welcome', 1, 'pause', 'completed', 10),
        (3, 1, 'welcome', 1, 'mail', 'entered', 10);
      PRAGMA user_version = 5;)sql");
  Reopen();
  using Entry = std::tuple<std::string, std::string, Millis>;
  ASSERT_TRUE(store_
                  ->Read([&](ReadTxn& t) -> Status {
                    auto steps = t.InstanceSteps(3);
                    EXPECT_TRUE(steps);
                    EXPECT_EQ(*steps, (std::vector<Entry>{{"pause", "entered", 20},
                                                          {"pause", "completed", 10},
                                                          {"mail", "entered", 10}}));
                    EXPECT_EQ(
                        StepCounts(t, ws, "welcome"),
                        (std::map<std::string, int64_t>{
                            {"mail/entered", 1}, {"pause/completed", 1}, {"pause/entered", 2}}));
                    return Status::Ok();
                  })
                  .ok());
}

// Schema 7: derived events under the unchecked prefix leave the messageId index, which keeps
// deduplicating client events and stable derived ids, including those stored before it.
TEST_F(SqliteStoreTest, UncheckedDerivedEventsLeaveTheMessageIdIndex) {
  const WorkspaceId ws = MakeWorkspace("a");
  const std::string stable = "nudge:Email Delivered:m7:1";
  auto insert = [&](const std::string& message_id) {
    bool inserted = false;
    Status s = store_->WriteSync([&](WriteTxn& t) -> Status {
      Event e{0, ws, 1, message_id, "track", "Signed Up", 10, 10, "{}"};
      auto r = t.InsertEvent(e);
      if (!r) return r.error();
      inserted = *r;
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return inserted;
  };
  // 1 when the messageId index is partial (schema 7), 0 when it holds every event.
  auto index_partial = [&] {
    return RawInt("SELECT partial FROM pragma_index_list('events') WHERE name = 'events_message'");
  };
  ASSERT_TRUE(insert("m1"));
  ASSERT_TRUE(insert(stable));
  ExecRaw(R"sql(
      DROP INDEX events_message;
      CREATE UNIQUE INDEX events_message ON events(ws, message_id);
      PRAGMA user_version = 6;)sql");  // back to schema 6: the index over every event
  EXPECT_EQ(index_partial(), 0);
  Reopen();
  EXPECT_FALSE(insert("m1"));
  EXPECT_FALSE(insert(stable));
  const std::string unchecked = std::string(kUncheckedDerivedPrefix) + "Segment Entered:s:1:42";
  EXPECT_TRUE(insert(unchecked));
  EXPECT_TRUE(insert(unchecked));  // not checked: its cause makes it unique in practice
  EXPECT_TRUE(insert("m2"));
  EXPECT_FALSE(insert("m2"));
  ASSERT_TRUE(store_
                  ->Read([&](ReadTxn& t) -> Status {
                    EXPECT_TRUE(*t.HasMessage(ws, stable));
                    EXPECT_TRUE(*t.HasMessage(ws, "m2"));
                    EXPECT_FALSE(*t.HasMessage(ws, "m3"));
                    EXPECT_EQ(*t.CountEvents(ws, EventOrigin::kAll), 5);
                    return Status::Ok();
                  })
                  .ok());
  // The migration made the index partial: the unchecked ids are not in it.
  EXPECT_EQ(index_partial(), 1);
}

// The admin API's pages of messages and instances, newest first, with every filter: each page
// holds the next rows below the cursor, the same rows a filter over everything would give.
TEST_F(SqliteStoreTest, PagesOfMessagesAndInstancesFollowEveryFilterNewestFirst) {
  const WorkspaceId ws = MakeWorkspace("a");
  const WorkspaceId other = MakeWorkspace("b");
  const std::vector<std::string> statuses = {"queued", "sent", "failed"};
  std::vector<Message> all;
  std::vector<Instance> instances;
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    for (int i = 0; i < 60; ++i) {
                      Message m;
                      m.workspace = i % 10 == 9 ? other : ws;
                      m.contact = 1 + i % 4;
                      m.journey = i % 5 == 0 ? "" : (i % 2 ? "welcome" : "nurture");
                      m.channel = "email";
                      m.status = statuses[i % 3];
                      m.idempotency_key = "k" + std::to_string(i);
                      m.created_at = m.send_at = m.updated_at = 1000 - i;  // ids and times apart
                      auto r = t.InsertMessage(m);
                      if (!r) return r.error();
                      all.push_back(m);
                      Instance in;
                      in.workspace = m.workspace;
                      in.journey = i % 2 ? "welcome" : "nurture";
                      in.version = 1;
                      in.contact = m.contact;
                      in.status = "active";
                      in.trigger_key = m.idempotency_key;
                      auto id = t.InsertInstance(in);
                      if (!id) return id.error();
                      in.id = *id;
                      instances.push_back(in);
                    }
                    return Status::Ok();
                  })
                  .ok());
  auto page_through = [&](MessageFilter f) {
    std::vector<int64_t> got;
    f.limit = 4;
    for (int pages = 0; pages < 100; ++pages) {
      std::vector<Message> page;
      EXPECT_TRUE(store_
                      ->Read([&](ReadTxn& t) -> Status {
                        auto r = t.ListMessages(f);
                        if (!r) return r.error();
                        page = std::move(*r);
                        return Status::Ok();
                      })
                      .ok());
      for (const auto& m : page) got.push_back(m.id);
      if (static_cast<int>(page.size()) < f.limit) break;
      f.before_id = page.back().id;
    }
    return got;
  };
  auto expected = [&](const std::function<bool(const Message&)>& keep) {
    std::vector<int64_t> ids;
    for (const auto& m : all)
      if (m.workspace == ws && keep(m)) ids.push_back(m.id);
    std::sort(ids.rbegin(), ids.rend());
    return ids;
  };
  MessageFilter f;
  f.workspace = ws;
  EXPECT_EQ(page_through(f), expected([](const Message&) { return true; }));
  MessageFilter by_status = f;
  by_status.status = "sent";
  EXPECT_EQ(page_through(by_status), expected([](const Message& m) { return m.status == "sent"; }));
  MessageFilter by_journey = f;
  by_journey.journey = "welcome";
  EXPECT_EQ(page_through(by_journey),
            expected([](const Message& m) { return m.journey == "welcome"; }));
  by_journey.status = "queued";
  EXPECT_EQ(page_through(by_journey), expected([](const Message& m) {
              return m.journey == "welcome" && m.status == "queued";
            }));
  MessageFilter by_contact = f;
  by_contact.contact = 2;
  EXPECT_EQ(page_through(by_contact), expected([](const Message& m) { return m.contact == 2; }));
  by_contact.journey = "welcome";
  by_contact.status = "failed";
  EXPECT_EQ(page_through(by_contact), expected([](const Message& m) {
              return m.contact == 2 && m.journey == "welcome" && m.status == "failed";
            }));
  EXPECT_FALSE(expected([](const Message& m) {
                 return m.contact == 2 && m.journey == "welcome" && m.status == "failed";
               }).empty());

  auto instances_of = [&](std::optional<ContactId> contact) {
    std::vector<int64_t> got;
    int64_t before = 0;
    for (int pages = 0; pages < 100; ++pages) {
      std::vector<Instance> page;
      EXPECT_TRUE(store_
                      ->Read([&](ReadTxn& t) -> Status {
                        auto r = t.ListInstances(ws, "welcome", contact, 3, before);
                        if (!r) return r.error();
                        page = std::move(*r);
                        return Status::Ok();
                      })
                      .ok());
      for (const auto& i : page) got.push_back(i.id);
      if (page.size() < 3) break;
      before = page.back().id;
    }
    return got;
  };
  auto expected_instances = [&](std::optional<ContactId> contact) {
    std::vector<int64_t> ids;
    for (const auto& i : instances)
      if (i.workspace == ws && i.journey == "welcome" && (!contact || i.contact == *contact))
        ids.push_back(i.id);
    std::sort(ids.rbegin(), ids.rend());
    return ids;
  };
  EXPECT_EQ(instances_of(std::nullopt), expected_instances(std::nullopt));
  EXPECT_EQ(instances_of(3), expected_instances(3));
  EXPECT_EQ(expected_instances(std::nullopt).size(), 24u);
}

// Delivery's read of due messages, a page at a time: first the quiet-hours messages whose time
// has come, by that time then id, then the queued ones due, by id; those not yet due and
// those already settled are left. Pages of 1 to 13 rows give the same sequence.
TEST_F(SqliteStoreTest, DueMessagesAreTheHeldOnesByTimeThenTheQueuedOnesById) {
  const WorkspaceId ws = MakeWorkspace("a");
  struct Row {
    std::string status;
    Millis send_at;
  };
  const std::vector<Row> rows = {
      {"queued", 100},  {"deferred_quiet_hours", 300}, {"sent", 10},
      {"queued", 900},  {"deferred_quiet_hours", 900}, {"queued", 200},
      {"failed", 10},   {"deferred_quiet_hours", 50},  {"queued", 500},
      {"cancelled", 1}, {"deferred_quiet_hours", 501}, {"queued", 0},
      {"sending", 5},   {"deferred_quiet_hours", 300}, {"deferred_quiet_hours", 500},
  };
  std::vector<int64_t> ids;
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    for (size_t i = 0; i < rows.size(); ++i) {
                      Message m;
                      m.workspace = ws;
                      m.contact = 1;
                      m.channel = "email";
                      m.status = rows[i].status;
                      m.idempotency_key = "d" + std::to_string(i);
                      m.send_at = rows[i].send_at;
                      auto r = t.InsertMessage(m);
                      if (!r) return r.error();
                      ids.push_back(m.id);
                    }
                    return Status::Ok();
                  })
                  .ok());
  const Millis now = 500;
  // Held, by time then id: 50 (row 7), 300 (rows 1 and 13), 500 (row 14); then queued by id.
  const std::vector<int64_t> want = {ids[7], ids[1], ids[13], ids[14],
                                     ids[0], ids[5], ids[8],  ids[11]};
  for (int limit = 1; limit <= 13; ++limit) {
    std::vector<int64_t> got;
    DueCursor cursor;
    for (int pages = 0; pages < 20; ++pages) {
      std::vector<Message> page;
      ASSERT_TRUE(store_
                      ->Read([&](ReadTxn& t) -> Status {
                        auto r = t.DueMessages(now, limit, cursor);
                        if (!r) return r.error();
                        page = std::move(*r);
                        return Status::Ok();
                      })
                      .ok());
      if (page.empty()) break;
      EXPECT_LE(page.size(), static_cast<size_t>(limit));
      for (const auto& m : page) got.push_back(m.id);
    }
    EXPECT_EQ(got, want) << "pages of " << limit;
  }
}

// Every listing statement reads its page from an index in its order: no full scan, and a sort
// only where listing_sql.h says so (a contact's few messages).
TEST_F(SqliteStoreTest, ListingStatementsReadPagesFromIndexesInTheirOrder) {
  for (const auto& st : sqlite::kListingStatements) {
    const auto steps = QueryPlan(st.sql);
    ASSERT_FALSE(steps.empty()) << st.name;
    std::string plan;
    for (const auto& line : steps) plan += line + "\n";
    EXPECT_EQ(plan.find("SCAN "), std::string::npos) << st.name << ":\n" << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE") != std::string::npos, st.sorts) << st.name << ":\n" << plan;
  }
}

// A contact's first and last seen times are those of its client events (not of those nudge
// derived), read from the events index from either end: with client and derived events
// interleaved, a contact read visits about as many rows at 10,000 events as at 20.
TEST_F(SqliteStoreTest, AContactsSeenTimesAreOfClientEventsAndReadWithoutItsHistory) {
  const WorkspaceId ws = MakeWorkspace("a");
  ContactId id = 0;
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    Contact c;
                    c.workspace = ws;
                    c.user_id = "u";
                    c.created_at = c.last_seen_at = 5000;
                    NUDGE_ASSIGN_OR_RETURN(id, t.InsertContact(c));
                    return Status::Ok();
                  })
                  .ok());
  int next = 0;
  Millis first_client = 0, last_client = 0;
  // n client events from 1000 on, each followed by one nudge derived; and one derived event
  // before all and after all of them.
  auto add = [&](int n) {
    ASSERT_TRUE(store_
                    ->WriteSync([&](WriteTxn& t) -> Status {
                      auto insert = [&](bool derived, Millis at) -> Status {
                        Event e;
                        e.workspace = ws;
                        e.contact = id;
                        e.message_id = (derived ? "nudge:d" : "m") + std::to_string(next++);
                        e.type = "track";
                        e.name = "E";
                        e.timestamp = e.received_at = at;
                        e.body = "{}";
                        if (!derived) {
                          if (first_client == 0) first_client = at;
                          last_client = at;
                        }
                        auto r = t.InsertEvent(e);
                        return r ? Status::Ok() : r.error();
                      };
                      NUDGE_TRY(insert(true, 1));
                      NUDGE_TRY(insert(true, 1'000'000'000));
                      for (int i = 0; i < n; ++i) {
                        NUDGE_TRY(insert(false, 1000 + next));
                        NUDGE_TRY(insert(true, 1000 + next));
                      }
                      return Status::Ok();
                    })
                    .ok());
  };
  auto read = [&](Contact* out) {
    sqlite3* db = OpenRaw();
    sqlite3_stmt* q = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sqlite::kContactById, -1, &q, nullptr), SQLITE_OK);
    sqlite3_bind_int64(q, 1, id);
    EXPECT_EQ(sqlite3_step(q), SQLITE_ROW);
    out->created_at = sqlite3_column_int64(q, 9);
    out->last_seen_at = sqlite3_column_int64(q, 10);
    const int steps = sqlite3_stmt_status(q, SQLITE_STMTSTATUS_VM_STEP, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    Reopen();
    return steps;
  };
  add(10);
  Contact few, many;
  const int few_steps = read(&few);
  EXPECT_EQ(few.created_at, first_client);  // before the contact's own 5000
  EXPECT_EQ(few.last_seen_at, 5000);        // the client events are all before it
  add(5000);
  const int many_steps = read(&many);
  EXPECT_EQ(many.created_at, first_client);
  EXPECT_GT(last_client, 5000);
  EXPECT_EQ(many.last_seen_at, last_client);
  EXPECT_LT(many_steps, few_steps * 3)
      << few_steps << " steps at 20 events, " << many_steps << " at 10,000";
}

// Schema 8 replaces the indexes that listings and delivery sorted through.
TEST_F(SqliteStoreTest, SchemaSevenIndexesAreReplaced) {
  ExecRaw(R"sql(
      DROP INDEX journey_instances_journey;
      CREATE INDEX journey_instances_journey ON journey_instances(ws, journey, status);
      DROP INDEX messages_journey;
      CREATE INDEX messages_journey ON messages(ws, journey, created_at);
      DROP INDEX messages_status;
      CREATE INDEX messages_status ON messages(status, send_at);
      DROP INDEX messages_deferred;
      PRAGMA user_version = 7;)sql");
  EXPECT_EQ(RawInt("SELECT count(*) FROM pragma_index_info('messages_status')"), 2);
  Reopen();
  EXPECT_EQ(RawInt("SELECT count(*) FROM pragma_index_info('journey_instances_journey')"), 2);
  EXPECT_EQ(RawInt("SELECT count(*) FROM pragma_index_info('messages_journey')"), 2);
  EXPECT_EQ(RawInt("SELECT count(*) FROM pragma_index_info('messages_status')"), 1);
  EXPECT_EQ(RawInt("SELECT partial FROM pragma_index_list('messages') WHERE name = "
                   "'messages_deferred'"),
            1);
}

TEST_F(SqliteStoreTest, CommittedWritesSurviveReopen) {
  const WorkspaceId ws = MakeWorkspace("a");
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    Contact c;
                    c.workspace = ws;
                    c.user_id = "u1";
                    c.traits = R"({"plan":"pro"})";
                    auto r = t.InsertContact(c);
                    if (!r) return r.error();
                    return t.LinkIdentity(ws, IdentityKind::kAnonymous, "anon-1", *r);
                  })
                  .ok());
  Reopen();
  ASSERT_TRUE(store_
                  ->Read([&](ReadTxn& t) -> Status {
                    auto c = t.FindContactByUserId(ws, "u1");
                    EXPECT_TRUE(c && *c);
                    EXPECT_EQ((*c)->traits, R"({"plan":"pro"})");
                    auto anon = t.FindContactByAnonymousId(ws, "anon-1");
                    EXPECT_TRUE(anon && *anon && **anon == (*c)->id);
                    return Status::Ok();
                  })
                  .ok());
}

TEST_F(SqliteStoreTest, MergeMovesEventsAndIdentities) {
  const WorkspaceId ws = MakeWorkspace("a");
  ContactId anon = 0, known = 0;
  ASSERT_TRUE(store_
                  ->WriteSync([&](WriteTxn& t) -> Status {
                    Contact c;
                    c.workspace = ws;
                    anon = *t.InsertContact(c);
                    c.user_id = "u1";
                    known = *t.InsertContact(c);
                    NUDGE_TRY(t.LinkIdentity(ws, IdentityKind::kAnonymous, "a1", anon));
                    Event e{0, ws, anon, "m1", "page", "Page Viewed", 5, 5, "{}"};
                    NUDGE_TRY(t.InsertEvent(e));
                    return t.MergeContacts(anon, known, 6);
                  })
                  .ok());
  ASSERT_TRUE(store_
                  ->Read([&](ReadTxn& t) -> Status {
                    EXPECT_FALSE(*t.GetContact(anon));
                    EXPECT_EQ(**t.FindContactByAnonymousId(ws, "a1"), known);
                    EXPECT_EQ(t.ListEvents(known, 10)->size(), 1u);
                    EXPECT_EQ(*t.CountContacts(ws), 1);
                    return Status::Ok();
                  })
                  .ok());
}

TEST_F(SqliteStoreTest, WritesAfterCloseAreRefused) {
  store_->Close();
  Status s = store_->WriteSync([](WriteTxn&) { return Status::Ok(); });
  EXPECT_EQ(s.code(), Code::kUnavailable);
}

TEST_F(SqliteStoreTest, AnUnsubscribeNeverWeakensABounceSuppression) {
  const WorkspaceId ws = MakeWorkspace("s");
  auto add = [&](const std::string& reason) {
    return store_->WriteSync([&](WriteTxn& t) {
      return t.AddSuppression({ws, "email", "a@example.com", reason, 1, reason + " detail"});
    });
  };
  auto reason = [&] {
    std::optional<Suppression> s;
    EXPECT_TRUE(store_
                    ->Read([&](ReadTxn& r) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(s, r.FindSuppression(ws, "email", "a@example.com"));
                      return Status::Ok();
                    })
                    .ok());
    return s ? s->reason : std::string("none");
  };
  ASSERT_TRUE(add("unsubscribed").ok());
  EXPECT_EQ(reason(), "unsubscribed");
  ASSERT_TRUE(add("hard_bounce").ok());
  EXPECT_EQ(reason(), "hard_bounce");
  ASSERT_TRUE(add("unsubscribed").ok());
  EXPECT_EQ(reason(), "hard_bounce") << "transactional mail must stay stopped";
  ASSERT_TRUE(add("complaint").ok());
  EXPECT_EQ(reason(), "complaint");
}

}  // namespace
}  // namespace nudge::store
