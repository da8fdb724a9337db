#include "profile/applier.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/time.h"
#include "ingest/parser.h"
#include "profile/observer.h"
#include "profile/traits.h"

namespace nudge::profile {
namespace {

using ingest::Endpoint;
using nlohmann::json;
using store::Contact;

class ApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nudge_applier_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store_ = std::move(*store::OpenSqliteStore({.path = (dir_ / "n.db").string()}));
    ASSERT_TRUE(store_
                    ->WriteSync([&](store::WriteTxn& t) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(ws_, t.InsertWorkspace({0, "w", "a", "b", 0}));
                      NUDGE_ASSIGN_OR_RETURN(other_ws_, t.InsertWorkspace({0, "o", "c", "d", 0}));
                      return Status::Ok();
                    })
                    .ok());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  ApplyResult Send(Endpoint e, const std::string& body, store::WorkspaceId ws = 0) {
    auto parsed = ingest::ParseRequest(e, body, now_);
    EXPECT_TRUE(parsed) << parsed.error().ToString();
    now_ += 1000;
    ApplyResult result;
    Status s = store_->WriteSync([&](store::WriteTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(result, applier_.Apply(t, ws ? ws : ws_, parsed->messages));
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return result;
  }

  std::optional<Contact> ByUser(const std::string& user, store::WorkspaceId ws = 0) {
    std::optional<Contact> out;
    EXPECT_TRUE(store_
                    ->Read([&](store::ReadTxn& t) -> Status {
                      NUDGE_ASSIGN_OR_RETURN(out, t.FindContactByUserId(ws ? ws : ws_, user));
                      return Status::Ok();
                    })
                    .ok());
    return out;
  }

  template <typename F>
  void Read(F f) {
    ASSERT_TRUE(store_
                    ->Read([&](store::ReadTxn& t) -> Status {
                      f(t);
                      return Status::Ok();
                    })
                    .ok());
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  store::WorkspaceId ws_ = 0, other_ws_ = 0;
  Applier applier_{ProfileOptions{}};
  core::Millis now_ = *core::ParseIso8601("2026-11-24T10:00:00Z");
};

TEST_F(ApplierTest, IdentifyMergesAnAnonymousVisitorsHistoryIntoTheKnownContact) {
  Send(Endpoint::kPage, R"({"anonymousId":"anon-1","properties":{"path":"/pricing"}})");
  Send(Endpoint::kTrack, R"({"anonymousId":"anon-1","event":"Video Played"})");
  Send(Endpoint::kIdentify, R"({"userId":"u1","traits":{"plan":"trial"}})");  // known, no link yet
  auto r = Send(Endpoint::kIdentify, R"({"userId":"u1","anonymousId":"anon-1"})");
  EXPECT_EQ(r.contacts_merged, 1u);
  auto c = ByUser("u1");
  ASSERT_TRUE(c);
  Read([&](store::ReadTxn& t) {
    EXPECT_EQ(t.ListEvents(c->id, 10)->size(), 4u);
    EXPECT_EQ(**t.FindContactByAnonymousId(ws_, "anon-1"), c->id);
    EXPECT_EQ(*t.CountContacts(ws_), 1);
  });
}

TEST_F(ApplierTest, AVisitorWhoIdentifiesKeepsTheSameContact) {
  Send(Endpoint::kTrack, R"({"anonymousId":"a2","event":"Signed Up"})");
  auto r = Send(Endpoint::kIdentify,
                R"({"userId":"u2","anonymousId":"a2","traits":{"email":" Zoe@Example.COM "}})");
  EXPECT_EQ(r.contacts_created, 0u);
  auto c = ByUser("u2");
  ASSERT_TRUE(c);
  EXPECT_EQ(*c->email, "Zoe@example.com");
  EXPECT_EQ(json::parse(c->traits)["email"], " Zoe@Example.COM ");  // the original is kept
}

TEST_F(ApplierTest, TraitsMergeAndNullRemoves) {
  Send(Endpoint::kIdentify,
       R"({"userId":"u3","traits":{"plan":"trial","seats":3,"phone":"(415) 555-2671"}})");
  Send(Endpoint::kIdentify, R"({"userId":"u3","traits":{"plan":"pro","seats":null}})");
  auto c = ByUser("u3");
  json traits = json::parse(c->traits);
  EXPECT_EQ(traits["plan"], "pro");
  EXPECT_FALSE(traits.contains("seats"));
  EXPECT_EQ(*c->phone, "+14155552671");
}

TEST_F(ApplierTest, AliasMergesTwoIdentities) {
  Send(Endpoint::kTrack, R"({"userId":"old-id","event":"A"})");
  Send(Endpoint::kTrack, R"({"userId":"new-id","event":"B"})");
  auto r = Send(Endpoint::kAlias, R"({"previousId":"old-id","userId":"new-id"})");
  EXPECT_EQ(r.contacts_merged, 1u);
  auto c = ByUser("new-id");
  ASSERT_TRUE(c);
  EXPECT_EQ(ByUser("old-id")->id, c->id);  // the old id still leads to the contact
  Read([&](store::ReadTxn& t) { EXPECT_EQ(t.ListEvents(c->id, 10)->size(), 3u); });
  // Later events under the old id land on the same contact.
  Send(Endpoint::kTrack, R"({"userId":"old-id","event":"C"})");
  Read([&](store::ReadTxn& t) { EXPECT_EQ(t.ListEvents(c->id, 10)->size(), 4u); });
}

TEST_F(ApplierTest, AliasOfAnAnonymousIdRenamesTheVisitor) {
  Send(Endpoint::kTrack, R"({"anonymousId":"a5","event":"A"})");
  Send(Endpoint::kAlias, R"({"previousId":"a5","userId":"u5"})");
  auto c = ByUser("u5");
  ASSERT_TRUE(c);
  Read([&](store::ReadTxn& t) {
    EXPECT_EQ(*t.CountContacts(ws_), 1);
    EXPECT_EQ(t.ListEvents(c->id, 10)->size(), 2u);
  });
}

TEST_F(ApplierTest, ASharedDeviceDoesNotMergeTwoKnownPeople) {
  Send(Endpoint::kIdentify, R"({"userId":"alice","anonymousId":"laptop"})");
  Send(Endpoint::kIdentify, R"({"userId":"bob","anonymousId":"laptop"})");
  auto alice = ByUser("alice"), bob = ByUser("bob");
  ASSERT_TRUE(alice && bob);
  EXPECT_NE(alice->id, bob->id);
  Read([&](store::ReadTxn& t) { EXPECT_EQ(**t.FindContactByAnonymousId(ws_, "laptop"), bob->id); });
}

TEST_F(ApplierTest, DuplicateMessageIdsAreStoredOnce) {
  const std::string body = R"({"userId":"u6","event":"Paid","messageId":"dup-1"})";
  EXPECT_EQ(Send(Endpoint::kTrack, body).accepted, 1u);
  auto again = Send(Endpoint::kTrack, body);
  EXPECT_EQ(again.accepted, 0u);
  EXPECT_EQ(again.duplicates, 1u);
  // The same id in another workspace is a different message.
  EXPECT_EQ(Send(Endpoint::kTrack, body, other_ws_).accepted, 1u);
  // Twice inside one batch.
  auto batch = Send(Endpoint::kBatch, R"({"batch":[
      {"type":"track","userId":"u6","event":"X","messageId":"dup-2"},
      {"type":"track","userId":"u6","event":"X","messageId":"dup-2"}]})");
  EXPECT_EQ(batch.accepted, 1u);
  EXPECT_EQ(batch.duplicates, 1u);
}

// A repeated messageId changes nothing, even when the repeat names other ids than the
// message first stored: no contact is created, no visitor merged, no id linked.
TEST_F(ApplierTest, ARepeatedMessageIdNamingOtherIdsChangesNoContact) {
  Send(Endpoint::kTrack, R"({"anonymousId":"visitor-r","event":"Look","messageId":"r-0"})");
  ASSERT_EQ(Send(Endpoint::kTrack, R"({"userId":"ur","event":"Paid","messageId":"r-1"})").accepted,
            1u);
  int64_t contacts = 0;
  Read([&](store::ReadTxn& t) { contacts = *t.CountContacts(ws_); });
  ASSERT_EQ(contacts, 2);
  const std::vector<std::string> repeats = {
      R"({"userId":"someone-new","event":"Paid","messageId":"r-1"})",                // would create
      R"({"anonymousId":"device-new","event":"Paid","messageId":"r-1"})",            // would create
      R"({"userId":"ur","anonymousId":"visitor-r","event":"P","messageId":"r-1"})",  // merge
      R"({"userId":"ur","anonymousId":"device-2","event":"P","messageId":"r-1"})",   // link
      R"({"userId":"new-2","anonymousId":"visitor-r","event":"P","messageId":"r-1"})",
  };
  for (const auto& body : repeats) {
    auto r = Send(Endpoint::kTrack, body);
    EXPECT_EQ(r.accepted, 0u) << body;
    EXPECT_EQ(r.duplicates, 1u) << body;
  }
  auto alias =
      Send(Endpoint::kAlias, R"({"userId":"ur","previousId":"visitor-r","messageId":"r-1"})");
  EXPECT_EQ(alias.duplicates, 1u);
  Read([&](store::ReadTxn& t) {
    EXPECT_EQ(*t.CountContacts(ws_), 2);
    EXPECT_FALSE(*t.FindContactByUserId(ws_, "someone-new"));
    EXPECT_FALSE(*t.FindContactByAnonymousId(ws_, "device-new"));
    EXPECT_FALSE(*t.FindContactByAnonymousId(ws_, "device-2"));
    auto visitor = *t.FindContactByAnonymousId(ws_, "visitor-r");
    ASSERT_TRUE(visitor);
    EXPECT_NE(*visitor, ByUser("ur")->id) << "the visitor was not merged";
  });
  // A new message with the same ids does all of it.
  EXPECT_EQ(Send(Endpoint::kTrack,
                 R"({"userId":"ur","anonymousId":"visitor-r","event":"P","messageId":"r-2"})")
                .accepted,
            1u);
  Read([&](store::ReadTxn& t) { EXPECT_EQ(*t.CountContacts(ws_), 1); });
}

// Writes the contact of every "Tag Me" event as a journey's update step does (read the row,
// change it, write it back), and the contact of every trait change to "plan" likewise.
class RowWritingObserver : public ContactObserver {
 public:
  Status OnContactCreated(store::WriteTxn&, const Contact&) override { return Status::Ok(); }
  Status OnContactChanged(store::WriteTxn& txn, const Contact& c, std::string_view) override {
    if (c.traits.find("\"plan\"") == std::string::npos) return Status::Ok();
    return Patch(txn, c.id, R"({"seen_plan":true})");
  }
  Status OnEvent(store::WriteTxn& txn, const store::Event& e) override {
    if (e.name != "Tag Me") return Status::Ok();
    return Patch(txn, e.contact, R"({"tagged":1})");
  }
  Status OnContactsMerged(store::WriteTxn&, store::ContactId, store::ContactId) override {
    return Status::Ok();
  }
  Status OnContactDeleted(store::WriteTxn&, store::ContactId) override { return Status::Ok(); }

 private:
  static Status Patch(store::WriteTxn& txn, store::ContactId id, const std::string& patch) {
    NUDGE_ASSIGN_OR_RETURN(auto c, txn.GetContact(id));
    if (!c) return Status::Ok();
    NUDGE_ASSIGN_OR_RETURN(c->traits, MergeTraits(c->traits, patch));
    return txn.UpdateContact(*c);
  }
};

// What the observer writes to a contact while a batch is applied (a journey's update step)
// stays, and it sees what the batch changed before: one batch with an identify and the event
// ends with both, in either order, as separate requests do.
TEST_F(ApplierTest, ContactWritesOfTheObserverSurviveTheRestOfTheBatch) {
  RowWritingObserver observer;
  Applier applier{ProfileOptions{}, &observer};
  auto send = [&](const std::string& body) {
    auto parsed = ingest::ParseRequest(Endpoint::kBatch, body, now_);
    ASSERT_TRUE(parsed) << parsed.error().ToString();
    now_ += 1000;
    ASSERT_TRUE(store_
                    ->WriteSync([&](store::WriteTxn& t) -> Status {
                      auto r = applier.Apply(t, ws_, parsed->messages);
                      return r ? Status::Ok() : r.error();
                    })
                    .ok());
  };
  send(R"({"batch":[
      {"type":"identify","userId":"b1","traits":{"email":"b1@example.com","plan":"pro"}},
      {"type":"track","userId":"b1","event":"Tag Me"}]})");
  send(R"({"batch":[
      {"type":"track","userId":"b2","event":"Tag Me"},
      {"type":"identify","userId":"b2","traits":{"email":"b2@example.com"}}]})");
  send(R"({"batch":[
      {"type":"track","anonymousId":"v3","event":"Tag Me"},
      {"type":"identify","userId":"b3","anonymousId":"v3","traits":{"email":"b3@example.com"}}]})");
  for (const char* user : {"b1", "b2", "b3"}) {
    auto c = ByUser(user);
    ASSERT_TRUE(c) << user;
    const auto traits = nlohmann::json::parse(c->traits);
    EXPECT_EQ(traits.value("tagged", 0), 1) << user << ": " << c->traits;
    EXPECT_EQ(traits.value("email", ""), std::string(user) + "@example.com") << c->traits;
    EXPECT_EQ(c->email, std::string(user) + "@example.com");
  }
  EXPECT_TRUE(nlohmann::json::parse(ByUser("b1")->traits).value("seen_plan", false))
      << ByUser("b1")->traits;
}

TEST_F(ApplierTest, WorkspacesDoNotShareContacts) {
  Send(Endpoint::kIdentify, R"({"userId":"same","traits":{"plan":"a"}})");
  Send(Endpoint::kIdentify, R"({"userId":"same","traits":{"plan":"b"}})", other_ws_);
  EXPECT_EQ(json::parse(ByUser("same")->traits)["plan"], "a");
  EXPECT_EQ(json::parse(ByUser("same", other_ws_)->traits)["plan"], "b");
}

TEST_F(ApplierTest, IdentifyWithTheEmailOfAnImportedContactAdoptsIt) {
  ASSERT_TRUE(store_
                  ->WriteSync([&](store::WriteTxn& t) -> Status {
                    Contact c;
                    c.workspace = ws_;
                    c.email = "lee@example.com";
                    c.traits = R"({"email":"lee@example.com","first_name":"Lee"})";
                    c.tags = R"(["newsletter"])";
                    c.created_at = c.last_seen_at = 1;
                    return t.InsertContact(c) ? Status::Ok() : Status::Internal("insert");
                  })
                  .ok());
  auto r = Send(Endpoint::kIdentify, R"({"userId":"u7","traits":{"email":"LEE@example.com"}})");
  EXPECT_EQ(r.contacts_merged, 1u);
  auto c = ByUser("u7");
  EXPECT_EQ(json::parse(c->traits)["first_name"], "Lee");
  EXPECT_EQ(json::parse(c->tags)[0], "newsletter");
  EXPECT_EQ(c->created_at, 1);
}

TEST_F(ApplierTest, FirstAndLastSeenFollowEventTimes) {
  Send(Endpoint::kTrack, R"({"userId":"u8","event":"A","timestamp":"2026-01-01T00:00:00Z"})");
  Send(Endpoint::kTrack, R"({"userId":"u8","event":"B","timestamp":"2025-06-01T00:00:00Z"})");
  Send(Endpoint::kTrack, R"({"userId":"u8","event":"C","timestamp":"2026-03-01T00:00:00Z"})");
  auto c = ByUser("u8");
  EXPECT_EQ(core::FormatIso8601(c->created_at), "2025-06-01T00:00:00.000Z");
  EXPECT_EQ(core::FormatIso8601(c->last_seen_at), "2026-03-01T00:00:00.000Z");
}

}  // namespace
}  // namespace nudge::profile
