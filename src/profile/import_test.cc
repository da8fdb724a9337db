#include "profile/import.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

namespace nudge::profile {
namespace {

using nlohmann::json;

class ImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nudge_import_" + std::to_string(getpid()) + "_" +
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
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::vector<ImportRowResult> Import(ImportRequest req) {
    std::vector<ImportRowResult> out;
    Status s = store_->WriteSync([&](store::WriteTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(out, ImportContacts(t, ws_, req, ProfileOptions{}, 100));
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  static ImportRow Row(int line, std::optional<std::string> email, std::string traits = "{}",
                       std::optional<std::string> phone = std::nullopt) {
    ImportRow r;
    r.line = line;
    r.email = std::move(email);
    r.phone = std::move(phone);
    r.traits = std::move(traits);
    return r;
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  store::WorkspaceId ws_ = 0;
};

TEST_F(ImportTest, DuplicatesInsideTheFileMergeAndExistingContactsUpdate) {
  auto first = Import({"imp-1",
                       "webinar",
                       {"q4"},
                       {Row(2, "ann@example.com", R"({"first_name":"Ann"})"),
                        Row(3, "ANN@Example.com", R"({"company":"Acme"})"), Row(4, "not-an-email"),
                        Row(5, std::nullopt, "{}", "+1 415 555 2671")}});
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[0].outcome, ImportOutcome::kCreated);
  EXPECT_EQ(first[1].outcome, ImportOutcome::kMerged);
  EXPECT_EQ(first[1].contact, first[0].contact);
  EXPECT_EQ(first[2].outcome, ImportOutcome::kRejected);
  EXPECT_NE(first[2].reason.find("invalid email"), std::string::npos);
  EXPECT_EQ(first[3].outcome, ImportOutcome::kCreated);

  auto second = Import({"imp-2",
                        "crm",
                        {"vip"},
                        {Row(2, "ann@example.com", R"({"first_name":"Anne"})"),
                         Row(3, std::nullopt, "{}", "(415) 555-2671")}});
  EXPECT_EQ(second[0].outcome, ImportOutcome::kUpdated);
  EXPECT_EQ(second[1].outcome, ImportOutcome::kUpdated);  // matched by the normalized phone
  ASSERT_TRUE(store_
                  ->Read([&](store::ReadTxn& t) -> Status {
                    auto c = **t.GetContact(first[0].contact);
                    json traits = json::parse(c.traits);
                    EXPECT_EQ(traits["first_name"], "Anne");
                    EXPECT_EQ(traits["company"], "Acme");
                    EXPECT_EQ(*c.source, "webinar");  // the first source stays
                    EXPECT_EQ(json::parse(c.tags), json::parse(R"(["q4","vip"])"));
                    EXPECT_EQ(*t.CountContacts(ws_), 2);
                    return Status::Ok();
                  })
                  .ok());
}

TEST_F(ImportTest, ASharedPhoneDoesNotMakeTwoPeopleWithDifferentEmailsOne) {
  // A household or a switchboard: two rows, two emails, one phone.
  auto first = Import({"imp-1",
                       "crm",
                       {},
                       {Row(2, "alice@example.com", R"({"first_name":"Alice"})", "+1 212 555 0101"),
                        Row(3, "bob@example.com", R"({"first_name":"Bob"})", "+1 212 555 0101")}});
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].outcome, ImportOutcome::kCreated);
  EXPECT_EQ(first[1].outcome, ImportOutcome::kCreated);
  EXPECT_NE(first[1].contact, first[0].contact);
  // Later: the same phone with another email is a third person; without an email, or with
  // Alice's email in other case, the row is Alice's.
  auto second = Import({"imp-2",
                        "crm",
                        {},
                        {Row(2, "dave@example.com", "{}", "(212) 555-0101"),
                         Row(3, "ALICE@Example.com", R"({"plan":"pro"})", "(212) 555-0101")}});
  EXPECT_EQ(second[0].outcome, ImportOutcome::kCreated);
  EXPECT_EQ(second[1].outcome, ImportOutcome::kUpdated);
  EXPECT_EQ(second[1].contact, first[0].contact);
  ASSERT_TRUE(store_
                  ->Read([&](store::ReadTxn& t) -> Status {
                    NUDGE_ASSIGN_OR_RETURN(auto alice, t.GetContact(first[0].contact));
                    NUDGE_ASSIGN_OR_RETURN(auto bob, t.GetContact(first[1].contact));
                    EXPECT_TRUE(alice &&
                                alice->email == "ALICE@example.com");  // the row's spelling wins
                    EXPECT_TRUE(bob && bob->email == "bob@example.com");
                    EXPECT_TRUE(bob && bob->phone == "+12125550101");
                    return Status::Ok();
                  })
                  .ok());
}

TEST_F(ImportTest, RowsWithoutAnyIdentifierAreRejected) {
  auto r = Import({"imp", std::nullopt, {}, {Row(7, std::nullopt, R"({"first_name":"X"})")}});
  EXPECT_EQ(r[0].outcome, ImportOutcome::kRejected);
  EXPECT_EQ(r[0].line, 7);
  EXPECT_NE(r[0].reason.find("no email"), std::string::npos);
}

}  // namespace
}  // namespace nudge::profile
