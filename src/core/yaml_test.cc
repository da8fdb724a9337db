// Positions inside scalars: a condition's error at line:column of its own text is reported at
// the line and column of the YAML file, however the scalar is written.
#include "core/yaml.h"

#include <gtest/gtest.h>

#include <string>

namespace nudge::core {
namespace {

// Where the first occurrence of `needle` in `key`'s value is, through WhereInside.
std::string WhereOf(const std::string& text, const std::string& key, const std::string& needle) {
  auto doc = LoadYaml(text, "f.yaml");
  EXPECT_TRUE(doc) << doc.error().ToString();
  if (!doc) return "";
  const YAML::Node node = doc->root[key];
  const std::string value = node.Scalar();
  const size_t at = value.find(needle);
  EXPECT_NE(at, std::string::npos) << value;
  const auto [line, col] = LineColumn(value, at);
  return doc->WhereInside(node, std::to_string(line) + ":" + std::to_string(col));
}

TEST(YamlWhereInside, OneLineScalars) {
  EXPECT_EQ(WhereOf("name: x\ncondition: traits.plan == 1\n", "condition", "=="), "f.yaml:2:24");
  EXPECT_EQ(WhereOf("condition: \"traits.plan == 1\"\n", "condition", "1"), "f.yaml:1:28");
  EXPECT_EQ(WhereOf("condition: 'a == ''x'' and b'\n", "condition", "and"), "f.yaml:1:24");
}

TEST(YamlWhereInside, PlainAndQuotedScalarsOverSeveralLines) {
  const std::string plain =
      "condition: event(\"Viewed\").count > 1 and\n"
      "  traits.plan == \"pro\" and\n"
      "    bogus(\n";
  EXPECT_EQ(WhereOf(plain, "condition", "traits"), "f.yaml:2:3");
  EXPECT_EQ(WhereOf(plain, "condition", "bogus"), "f.yaml:3:5");
  const std::string quoted =
      "condition: \"a == 1 and\n"
      "  b == \\\"x\\\" and c\"\n";
  EXPECT_EQ(WhereOf(quoted, "condition", "c"), "f.yaml:2:18");
}

TEST(YamlWhereInside, FoldedAndLiteralBlocks) {
  const std::string folded =
      "name: n\n"
      "condition: >\n"
      "  event(\"Viewed\").count > 1\n"
      "  and traits.plan == \"pro\"\n"
      "  and oops\n";
  EXPECT_EQ(WhereOf(folded, "condition", "traits"), "f.yaml:4:7");
  EXPECT_EQ(WhereOf(folded, "condition", "oops"), "f.yaml:5:7");
  const std::string literal =
      "condition: |\n"
      "    a == 1\n"
      "    and b == 2\n";
  EXPECT_EQ(WhereOf(literal, "condition", "b"), "f.yaml:3:9");
}

TEST(YamlWhereInside, JustPastTheEndOfTheValue) {
  // "unexpected end of the condition" points one past its last character.
  auto doc = LoadYaml("condition: >\n  a and\n  (b\nnext: 1\n", "f.yaml");
  ASSERT_TRUE(doc);
  const YAML::Node node = doc->root["condition"];
  ASSERT_EQ(node.Scalar(), "a and (b\n");
  EXPECT_EQ(doc->WhereInside(node, "1:9"), "f.yaml:3:5");
}

}  // namespace
}  // namespace nudge::core
