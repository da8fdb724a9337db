#include "app/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

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

}  // namespace
}  // namespace nudge::app
