#include "app/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace nudge::app {
namespace {

std::string WriteFile(const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("nudge_config_" + std::to_string(getpid()) + ".yaml");
  std::ofstream(path) << text;
  return path.string();
}

TEST(Config, LayersFileThenEnvironmentThenFlags) {
  const std::string file = WriteFile("listen: 127.0.0.1:9000\ndata: /tmp/a\nlog_level: debug\n");
  auto c = LoadConfig({file, std::nullopt, std::nullopt}, {{"NUDGE_DATA", "/tmp/b"}});
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->listen, "127.0.0.1:9000");
  EXPECT_EQ(c->data, "/tmp/b");
  EXPECT_EQ(c->log_level, "debug");
  c = LoadConfig({file, "127.0.0.1:7000", std::nullopt}, {{"NUDGE_LISTEN", "127.0.0.1:8000"}});
  EXPECT_EQ(c->listen, "127.0.0.1:7000");
  c = LoadConfig({}, {{"NUDGE_CONFIG", file}, {"NUDGE_WRITE_KEY", "wk"}});
  EXPECT_EQ(c->listen, "127.0.0.1:9000");
  EXPECT_EQ(*c->write_key, "wk");
}

TEST(Config, ErrorsSayWhere) {
  auto c = LoadConfig({WriteFile("listen: 1.2.3.4:5\nlisten_port: 9\n"), {}, {}}, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().where().find(":2:1"), std::string::npos) << c.error().ToString();
  EXPECT_NE(c.error().message().find("unknown setting"), std::string::npos);
  c = LoadConfig({WriteFile("listen: [unclosed\n"), {}, {}}, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().where().find(":2:"), std::string::npos) << c.error().ToString();
  c = LoadConfig({}, {{"NUDGE_HTTP_THREADS", "many"}});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().where(), "NUDGE_HTTP_THREADS");
  c = LoadConfig({"/nonexistent/nudge.yaml", {}, {}}, {});
  ASSERT_FALSE(c);
}

// A key that headers could never carry as set (spaces at its ends are trimmed from a Bearer
// token; ':' ends a Basic user name) is refused at start rather than locking the admin out.
TEST(Config, KeysThatCouldNeverBeSentAreRefused) {
  for (const auto& [var, value] :
       std::vector<std::pair<std::string, std::string>>{{"NUDGE_ADMIN_KEY", "ak3 "},
                                                        {"NUDGE_ADMIN_KEY", "a k"},
                                                        {"NUDGE_WRITE_KEY", " wk3"},
                                                        {"NUDGE_WRITE_KEY", "w:k"}}) {
    auto c = LoadConfig({}, {{var, value}});
    ASSERT_FALSE(c) << var << "='" << value << "'";
    EXPECT_EQ(c.error().where(), var) << c.error().ToString();
  }
  auto c = LoadConfig({WriteFile("admin_key: \"ak \"\n"), {}, {}}, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().where().find(":1:1: admin_key"), std::string::npos) << c.error().ToString();
  c = LoadConfig({}, {{"NUDGE_ADMIN_KEY", "ak:with-colon_1"}, {"NUDGE_WRITE_KEY", "wk-1"}});
  EXPECT_TRUE(c) << c.error().ToString();
}

// The file and the environment check a setting alike, and say where the bad value came from:
// the file's line:column and the setting, or the variable.
TEST(Config, FileAndEnvironmentAreCheckedAlike) {
  struct Case {
    std::string yaml;
    std::string where;  // part of the file's position
    std::string var, value;
  };
  const std::vector<Case> cases = {
      {"default_region: Germany\n", ":1:1: default_region", "NUDGE_DEFAULT_REGION", "Germany"},
      {"default_region: ZZ\n", ":1:1: default_region", "NUDGE_DEFAULT_REGION", "ZZ"},
      {"public_url: ftp://x\n", ":1:1: public_url", "NUDGE_PUBLIC_URL", "ftp://x"},
      {"public_url: http://\n", ":1:1: public_url", "NUDGE_PUBLIC_URL", "http://"},
      {"public_url: http://exa mple.com\n", ":1:1: public_url", "NUDGE_PUBLIC_URL",
       "http://exa mple.com"},
      // The server binds an IP address: a bad listen stops it before it opens the data.
      {"listen: localhost:8080\n", ":1:1: listen", "NUDGE_LISTEN", "localhost:8080"},
      {"listen: 127.0.0.1:99999\n", ":1:1: listen", "NUDGE_LISTEN", "127.0.0.1:99999"},
      {"listen: \":8080\"\n", ":1:1: listen", "NUDGE_LISTEN", ":8080"},
      {"listen: \"::1:8080\"\n", ":1:1: listen", "NUDGE_LISTEN", "::1:8080"},
  };
  for (const auto& k : cases) {
    auto c = LoadConfig({WriteFile(k.yaml), {}, {}}, {});
    ASSERT_FALSE(c) << k.yaml;
    EXPECT_NE(c.error().where().find(k.where), std::string::npos) << c.error().ToString();
    EXPECT_NE(c.error().message().find("'" + k.value + "'"), std::string::npos)
        << c.error().ToString();
    c = LoadConfig({}, {{k.var, k.value}});
    ASSERT_FALSE(c) << k.var;
    EXPECT_EQ(c.error().where(), k.var) << c.error().ToString();
  }
  auto c = LoadConfig({}, {{"NUDGE_LISTEN", "[::1]:0"}});
  ASSERT_TRUE(c) << c.error().ToString();
  c = LoadConfig({{}, "127.0.0.1", {}}, {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().where(), "--listen");
  c = LoadConfig({WriteFile("feedback:\n  listen: nowhere\n"), {}, {}}, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().where().find(":2:11"), std::string::npos) << c.error().ToString();
  c = LoadConfig({WriteFile("feedback:\n  listen: \":2526\"\n"), {}, {}}, {});
  ASSERT_TRUE(c) << c.error().ToString();
  c = LoadConfig({WriteFile("default_region: de\n"), {}, {}}, {});
  ASSERT_TRUE(c) << c.error().ToString();
  c = LoadConfig({}, {{"NUDGE_PUBLIC_URL", "https://nudge.acme.test/"}});
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->public_url, "https://nudge.acme.test");
  // A misspelled limit is unknown whatever its value.
  c = LoadConfig({WriteFile("limits:\n  max_mesage_bytes: 100\n"), {}, {}}, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("unknown setting"), std::string::npos) << c.error().ToString();
  EXPECT_NE(c.error().where().find(":2:3: limits.max_mesage_bytes"), std::string::npos);
  c = LoadConfig({}, {{"NUDGE_DELIVERY_HOLD", "maybe"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("true"), std::string::npos) << c.error().ToString();
  c = LoadConfig({}, {{"NUDGE_HUGE_PAGES", "maybe"}});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().where(), "NUDGE_HUGE_PAGES");
  c = LoadConfig({}, {{"NUDGE_DELIVERY_HOLD", "yes"}});
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->delivery_hold);
}

// Values that would start a server that misbehaves later are refused at start, at their
// position and with their full name.
TEST(Config, ValuesThatCouldOnlyFailLaterAreRefused) {
  setenv("NUDGE_TEST_SMS_TOKEN", "t", 1);
  const std::string sms =
      "channels:\n  sms:\n    gateway: { url: \"http://127.0.0.1:9/\", account: a, "
      "token_env: NUDGE_TEST_SMS_TOKEN, from: \"+15550001111\" }\n";
  struct Case {
    std::string yaml, where, message;
  };
  const std::vector<Case> cases = {
      {sms + "    threads: 0\n", ":4:14",
       "channels.sms.threads: expected a whole number from 1 to 64"},
      {"channels:\n  webhook:\n    threads: 65\n", ":3:14", "channels.webhook.threads"},
      {"delivery:\n  retry:\n    attempts: 2.5\n", ":3:15", "got '2.5'"},
      {"delivery:\n  workers: many\n", ":2:12", "delivery.workers: expected a whole number"},
      {"delivery:\n  retry:\n    initial: 10m\n    max: 1m\n", ":4:10", "shorter"},
      {"delivery:\n  unsubscribe_mailbox: not an address\n", ":2:24", "email address"},
      {"feedback:\n  maildir: /nonexistent/maildir\n", ":2:12", "no such directory"},
      {"write_key: \"\"\n", ":1:1: write_key", "may not be empty"},
      {"limits:\n  max_message_bytes: 600000\n  max_batch_bytes: 2000\n", ":1:1: limits",
       "a batch holds at least one message"},
      {"limits:\n  max_backlog_bytes: 1000\n", ":2:3: limits.max_backlog_bytes",
       "expected a whole number from 1048576 to 2147483647, got '1000'"},
      {"channels:\n  sms:\n    gateway: { url: \"http://127.0.0.1:9/\", account: a, "
       "token_env: NUDGE_TEST_SMS_TOKEN, from: \"not a number\" }\n",
       ":3:", "E.164"},
  };
  for (const auto& k : cases) {
    auto c = LoadConfig({WriteFile(k.yaml), {}, {}}, {});
    ASSERT_FALSE(c) << k.yaml;
    EXPECT_NE(c.error().where().find(k.where), std::string::npos) << c.error().ToString();
    EXPECT_NE(c.error().message().find(k.message), std::string::npos) << c.error().ToString();
  }
  // Every error names the setting in full, however deep it sits.
  for (const auto& [yaml, name] : std::vector<std::pair<std::string, std::string>>{
           {"delivery:\n  track_opens: maybe\n", "delivery.track_opens: "},
           {"delivery:\n  retry:\n    tries: 3\n", "delivery.retry.tries: "},
           {"delivery:\n  retry:\n    initial: soon\n", "delivery.retry.initial: "},
           {"delivery:\n  bogus: 1\n", "delivery.bogus: "},
           {"feedback:\n  poll: often\n", "feedback.poll: "},
           {"channels:\n  webhook:\n    timeout: soon\n", "channels.webhook.timeout: "}}) {
    auto bad = LoadConfig({WriteFile(yaml), {}, {}}, {});
    ASSERT_FALSE(bad) << yaml;
    EXPECT_TRUE(bad.error().message().starts_with(name)) << bad.error().ToString();
  }
  auto c = LoadConfig({WriteFile(sms + "    threads: 8\n"), {}, {}}, {});
  ASSERT_TRUE(c) << c.error().ToString();
  c = LoadConfig({WriteFile("channels:\n  sms:\n    gateway: { url: \"http://127.0.0.1:9/\", "
                            "account: a, token_env: NUDGE_TEST_SMS_TOKEN, from: Acme }\n"),
                  {},
                  {}},
                 {});
  ASSERT_TRUE(c) << c.error().ToString();
}

}  // namespace
}  // namespace nudge::app
