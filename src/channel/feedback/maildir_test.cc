#include "channel/feedback/maildir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace nudge::channel {
namespace {

namespace fs = std::filesystem;

std::string ReadSample(const std::string& name) {
  std::ifstream in(std::string(NUDGE_FEEDBACK_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in) << "missing sample " << name;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

class MaildirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "nudge-maildir-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    for (const char* sub : {"new", "cur", "tmp"}) fs::create_directory(root_ / sub);
  }
  void TearDown() override { fs::remove_all(root_); }

  void Deliver(const std::string& name, const std::string& content) {
    std::ofstream(root_ / "new" / name, std::ios::binary) << content;
  }
  std::set<std::string> Files(const char* sub) const {
    std::set<std::string> names;
    if (!fs::exists(root_ / sub)) return names;
    for (const auto& entry : fs::directory_iterator(root_ / sub)) {
      names.insert(entry.path().filename().string());
    }
    return names;
  }

  fs::path root_;
};

TEST_F(MaildirTest, ParsedFilesGoToCurOthersToFailed) {
  Deliver("1710410537.M1P1.mail", ReadSample("postfix_bounce.eml"));
  Deliver("1710410538.M2P1.mail", ReadSample("autoreply.eml"));
  Deliver("1710410539.M3P1.mail", ReadSample("arf_abuse.eml"));
  Deliver(".hidden", "not for us");
  std::ofstream(root_ / "tmp" / "1710410540.M4P1.mail") << ReadSample("qmail_bounce.eml");

  std::vector<std::pair<std::string, Feedback>> seen;
  MaildirReader reader(root_.string());
  auto stats = reader.Poll([&](const std::string& file, const std::vector<Feedback>& feedback) {
    for (const Feedback& f : feedback) seen.emplace_back(file, f);
    return Status::Ok();
  });
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->delivered, 2u);
  ASSERT_EQ(stats->failed.size(), 1u);
  EXPECT_EQ(stats->failed[0].first, "1710410538.M2P1.mail");
  EXPECT_EQ(stats->failed[0].second.code(), Code::kInvalidArgument);
  EXPECT_EQ(stats->remaining, 0u);

  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, "1710410537.M1P1.mail");
  EXPECT_EQ(seen[0].second.recipient, "no.such.user@example.com");
  EXPECT_EQ(seen[0].second.kind, Feedback::Kind::kHardBounce);
  EXPECT_EQ(seen[1].second.kind, Feedback::Kind::kComplaint);

  EXPECT_EQ(Files("new"), (std::set<std::string>{".hidden"}));
  EXPECT_EQ(Files("cur"),
            (std::set<std::string>{"1710410537.M1P1.mail:2,S", "1710410539.M3P1.mail:2,S"}));
  EXPECT_EQ(Files("failed"), (std::set<std::string>{"1710410538.M2P1.mail"}));
  EXPECT_EQ(Files("tmp").size(), 1u);  // deliveries in progress are not touched

  // Nothing left: the next poll does nothing.
  auto again = reader.Poll([](const std::string&, const std::vector<Feedback>&) {
    ADD_FAILURE() << "no file should be offered";
    return Status::Ok();
  });
  ASSERT_TRUE(again);
  EXPECT_EQ(again->delivered, 0u);
}

TEST_F(MaildirTest, HandlerFailureLeavesTheFileForTheNextPoll) {
  Deliver("a.mail", ReadSample("qmail_bounce.eml"));
  Deliver("b.mail", ReadSample("exim_bounce.eml"));
  MaildirReader reader(root_.string());
  int calls = 0;
  auto failed = reader.Poll([&](const std::string&, const std::vector<Feedback>&) {
    ++calls;
    return Status::Unavailable("store is shutting down");
  });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), Code::kUnavailable);
  EXPECT_EQ(failed.error().where(), "a.mail");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(Files("new"), (std::set<std::string>{"a.mail", "b.mail"}));

  auto ok =
      reader.Poll([](const std::string&, const std::vector<Feedback>&) { return Status::Ok(); });
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->delivered, 2u);
  EXPECT_TRUE(Files("new").empty());
}

TEST_F(MaildirTest, BoundedPerPollInNameOrder) {
  for (const char* name : {"3.mail", "1.mail", "2.mail"}) {
    Deliver(name, ReadSample("dsn_delayed.eml"));
  }
  MaildirOptions options;
  options.max_files_per_poll = 2;
  MaildirReader reader(root_.string(), options);
  std::vector<std::string> order;
  auto handler = [&](const std::string& file, const std::vector<Feedback>&) {
    order.push_back(file);
    return Status::Ok();
  };
  auto first = reader.Poll(handler);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->delivered, 2u);
  EXPECT_EQ(first->remaining, 1u);
  auto second = reader.Poll(handler);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->delivered, 1u);
  EXPECT_EQ(order, (std::vector<std::string>{"1.mail", "2.mail", "3.mail"}));
}

TEST_F(MaildirTest, NeverOverwritesAndRefusesLargeFiles) {
  fs::create_directory(root_ / "failed");
  std::ofstream(root_ / "failed" / "x.mail") << "an earlier failure";
  std::ofstream(root_ / "cur" / "y.mail:2,S") << "an earlier message";
  Deliver("x.mail", "garbage");
  Deliver("y.mail", ReadSample("qmail_bounce.eml"));
  Deliver("z.mail", ReadSample("postfix_bounce.eml"));
  MaildirOptions options;
  options.limits.max_message_bytes = 2000;  // z.mail is larger
  MaildirReader reader(root_.string() + "/", options);
  auto stats =
      reader.Poll([](const std::string&, const std::vector<Feedback>&) { return Status::Ok(); });
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->delivered, 1u);
  ASSERT_EQ(stats->failed.size(), 2u);
  EXPECT_EQ(stats->failed[1].second.code(), Code::kTooLarge);
  EXPECT_EQ(Files("failed"), (std::set<std::string>{"x.mail", "x.mail.1", "z.mail"}));
  EXPECT_EQ(Files("cur"), (std::set<std::string>{"y.mail:2,S", "y.mail.1:2,S"}));
  std::ifstream earlier(root_ / "failed" / "x.mail");
  std::string content((std::istreambuf_iterator<char>(earlier)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "an earlier failure");
}

TEST(Maildir, MissingDirectory) {
  MaildirReader reader("/nonexistent/nudge/maildir");
  auto stats =
      reader.Poll([](const std::string&, const std::vector<Feedback>&) { return Status::Ok(); });
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace nudge::channel
