#include "core/yaml.h"

#include <algorithm>
#include <charconv>
#include <set>

namespace nudge::core {

std::string YamlDoc::Where(const YAML::Node& node) const {
  const YAML::Mark m = node.Mark();
  if (m.is_null() || m.line < 0) return source;
  return source + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

std::pair<int, int> LineColumn(std::string_view text, size_t offset) {
  int line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, static_cast<int>(offset - line_start) + 1};
}

// The scalar's value is what YAML made of its text: quotes and escapes taken out, and in plain,
// quoted and folded scalars each line break folded into a space (or an empty line into a line
// break), the next line's indentation dropped. Walking the value and the text side by side
// finds the byte of the text each character of the value came from.
std::string YamlDoc::WhereInside(const YAML::Node& scalar, std::string_view inner) const {
  const YAML::Mark m = scalar.Mark();
  int in_line = 1, in_col = 1;
  const auto colon = inner.find(':');
  if (colon == std::string_view::npos || m.is_null() || m.line < 0 || !scalar.IsScalar())
    return Where(scalar);
  std::from_chars(inner.data(), inner.data() + colon, in_line);
  std::from_chars(inner.data() + colon + 1, inner.data() + inner.size(), in_col);
  // The scalar's first character in the text.
  size_t pos = 0;
  for (int line = 0; line < m.line && pos != std::string::npos; ++line) {
    pos = text.find('\n', pos);
    if (pos != std::string::npos) ++pos;
  }
  if (pos == std::string::npos) return Where(scalar);
  pos += static_cast<size_t>(m.column);
  if (pos >= text.size()) return Where(scalar);
  const char first = text[pos];
  if (first == '|' || first == '>') {
    pos = text.find('\n', pos);  // a block scalar's text starts on the next line
    if (pos == std::string::npos) return Where(scalar);
    ++pos;
  } else if (first == '"' || first == '\'') {
    ++pos;
  }
  // The value's index the position names.
  const std::string& value = scalar.Scalar();
  size_t target = value.size();
  {
    int line = 1, col = 1;
    for (size_t i = 0; i < value.size(); ++i) {
      if (line == in_line && col == in_col) {
        target = i;
        break;
      }
      if (value[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
  }
  // Side by side up to it, itself included: a text byte that is not the value's next character
  // was taken out (indentation, a quote, an escape's backslash) and is skipped.
  size_t src = pos;
  size_t last = pos;  // the text byte of the last character matched
  for (size_t i = 0; i < std::min(target + 1, value.size()); ++i) {
    const char c = value[i];
    for (;;) {
      if (src >= text.size()) return Where(scalar);
      const char t = text[src];
      if (t == c || (t == '\n' && c == ' ')) break;
      ++src;
    }
    last = src++;
  }
  // The target's byte, or just past the value's end.
  const size_t at = target < value.size() ? last : value.empty() ? pos : last + 1;
  const auto [line, column] = LineColumn(text, at);
  return source + ":" + std::to_string(line) + ":" + std::to_string(column);
}

Status YamlDoc::ErrorAt(const YAML::Node& node, std::string_view field, std::string message) const {
  std::string msg(field);
  if (!msg.empty()) msg += ": ";
  msg += message;
  return Status::Invalid(std::move(msg), Where(node));
}

namespace {

// yaml-cpp accepts duplicate keys silently (the last wins); a typo'd copy of a key would hide.
Status CheckDuplicates(const YamlDoc& doc, const YAML::Node& node) {
  if (node.IsMap()) {
    std::set<std::string> seen;
    for (const auto& kv : node) {
      const std::string key = kv.first.Scalar();
      if (!seen.insert(key).second)
        return doc.ErrorAt(kv.first, key, "the key appears twice in this mapping");
      NUDGE_TRY(CheckDuplicates(doc, kv.second));
    }
  } else if (node.IsSequence()) {
    for (const auto& item : node) NUDGE_TRY(CheckDuplicates(doc, item));
  }
  return Status::Ok();
}

}  // namespace

Result<YamlDoc> LoadYaml(std::string_view text, std::string_view source) {
  YamlDoc doc{std::string(source), std::string(text), {}};
  try {
    doc.root = YAML::Load(doc.text);
  } catch (const YAML::Exception& e) {
    return Err(Status::Invalid(e.msg, source.empty() ? ""
                                                     : std::string(source) + ":" +
                                                           std::to_string(e.mark.line + 1) + ":" +
                                                           std::to_string(e.mark.column + 1)));
  }
  if (!doc.root.IsDefined() || doc.root.IsNull())
    return Err(Status::Invalid("the document is empty",
                               source.empty() ? "" : std::string(source) + ":1:1"));
  if (!doc.root.IsMap())
    return Err(doc.ErrorAt(doc.root, "", "expected a mapping of keys (key: value)"));
  NUDGE_TRY(CheckDuplicates(doc, doc.root));
  return doc;
}

Result<std::optional<std::string>> YamlString(const YamlDoc& doc, const YAML::Node& map,
                                              const char* key) {
  const YAML::Node n = map[key];
  if (!n.IsDefined() || n.IsNull()) return std::optional<std::string>();
  if (!n.IsScalar()) return Err(doc.ErrorAt(n, key, "expected text"));
  return std::optional<std::string>(n.Scalar());
}

Result<std::optional<double>> YamlNumber(const YamlDoc& doc, const YAML::Node& map,
                                         const char* key) {
  const YAML::Node n = map[key];
  if (!n.IsDefined() || n.IsNull()) return std::optional<double>();
  if (!n.IsScalar()) return Err(doc.ErrorAt(n, key, "expected a number"));
  const std::string& s = n.Scalar();
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size())
    return Err(doc.ErrorAt(n, key, "expected a number, got '" + s + "'"));
  return std::optional<double>(v);
}

Status YamlNamed(const Status& s, std::string_view path) {
  const std::string p(path);
  if (s.ok() || p.empty() || s.message().starts_with(p + ".") || s.message().starts_with(p + ":"))
    return s;
  return Status(s.code(), std::string(path) + "." + s.message(), s.where());
}

Result<std::optional<int>> YamlInt(const YamlDoc& doc, const YAML::Node& map, const char* key,
                                   std::string_view path, int min, int max) {
  const YAML::Node n = map[key];
  if (!n.IsDefined() || n.IsNull()) return std::optional<int>();
  const std::string field = path.empty() ? std::string(key) : std::string(path) + "." + key;
  const std::string expected =
      "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  if (!n.IsScalar()) return Err(doc.ErrorAt(n, field, expected));
  const std::string& s = n.Scalar();
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < min || v > max)
    return Err(doc.ErrorAt(n, field, expected + ", got '" + s + "'"));
  return std::optional<int>(v);
}

Result<std::optional<bool>> YamlBool(const YamlDoc& doc, const YAML::Node& map, const char* key) {
  const YAML::Node n = map[key];
  if (!n.IsDefined() || n.IsNull()) return std::optional<bool>();
  if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false"))
    return std::optional<bool>(n.Scalar() == "true");
  return Err(doc.ErrorAt(n, key, "expected true or false"));
}

Result<std::optional<Millis>> YamlDuration(const YamlDoc& doc, const YAML::Node& map,
                                           const char* key) {
  const YAML::Node n = map[key];
  if (!n.IsDefined() || n.IsNull()) return std::optional<Millis>();
  if (!n.IsScalar()) return Err(doc.ErrorAt(n, key, "expected a duration such as 7d"));
  const std::string& s = n.Scalar();
  if (s.size() < 2) return Err(doc.ErrorAt(n, key, "expected a duration such as 30s, 2h, 7d, 2w"));
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size() - 1, v);
  int64_t scale = 0;
  switch (s.back()) {
    case 's':
      scale = 1000;
      break;
    case 'm':
      scale = 60000;
      break;
    case 'h':
      scale = 3600000;
      break;
    case 'd':
      scale = 86400000;
      break;
    case 'w':
      scale = 7 * 86400000LL;
      break;
  }
  if (ec != std::errc() || end != s.data() + s.size() - 1 || scale == 0 || v < 0 ||
      v > 100000LL * 86400000 / scale)
    return Err(doc.ErrorAt(n, key, "expected a duration such as 30s, 2h, 7d, 2w; got '" + s + "'"));
  return std::optional<Millis>(v * scale);
}

Status YamlKnownKeys(const YamlDoc& doc, const YAML::Node& map,
                     std::initializer_list<std::string_view> known) {
  if (!map.IsMap()) return doc.ErrorAt(map, "", "expected a mapping of keys");
  for (const auto& kv : map) {
    const std::string key = kv.first.Scalar();
    bool ok = false;
    for (auto k : known) ok = ok || k == key;
    if (ok) continue;
    std::string list;
    for (auto k : known) {
      if (!list.empty()) list += ", ";
      list += k;
    }
    return doc.ErrorAt(kv.first, key, "unknown key (known: " + list + ")");
  }
  return Status::Ok();
}

}  // namespace nudge::core
