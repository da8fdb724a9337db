// Reading YAML documents (workspace files, API bodies) with errors that say where: every
// failure is kInvalidArgument with where = "source:line:column" and the field's name.
// Include only from .cc files: yaml-cpp's header is large. Thread-safe (no shared state).
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/result.h"

namespace nudge::core {

// The line and column (1-based) of byte `offset` of `text`.
std::pair<int, int> LineColumn(std::string_view text, size_t offset);

// A parsed document with its source text and name, for positions.
struct YamlDoc {
  std::string source;  // "segments/engaged.yaml", "request body"
  std::string text;
  YAML::Node root;

  // "source:line:column" of a node (1-based).
  std::string Where(const YAML::Node& node) const;
  // Where a position inside a scalar (line:column counted in the scalar's own text, as
  // condition errors are) falls in the document: handles plain, quoted and block scalars.
  std::string WhereInside(const YAML::Node& scalar, std::string_view inner) const;
  // An error at a node; `field` prefixes the message ("condition: ...").
  Status ErrorAt(const YAML::Node& node, std::string_view field, std::string message) const;
};

// Parses text; the root must be a mapping. Tabs in indentation and duplicate keys are errors.
Result<YamlDoc> LoadYaml(std::string_view text, std::string_view source);

// Typed field access on a mapping node; absent fields yield nullopt, wrong kinds an error.
Result<std::optional<std::string>> YamlString(const YamlDoc& doc, const YAML::Node& map,
                                              const char* key);
Result<std::optional<double>> YamlNumber(const YamlDoc& doc, const YAML::Node& map,
                                         const char* key);
// A whole number from min to max; errors name the field as `path.key` ("delivery.workers").
Result<std::optional<int>> YamlInt(const YamlDoc& doc, const YAML::Node& map, const char* key,
                                   std::string_view path, int min, int max);
Result<std::optional<bool>> YamlBool(const YamlDoc& doc, const YAML::Node& map, const char* key);
// A duration written as the condition language does ("7d", "30s").
Result<std::optional<Millis>> YamlDuration(const YamlDoc& doc, const YAML::Node& map,
                                           const char* key);
// Rewrites a typed read's "key: message" as "<path>.key: message", keeping where, so that an
// error names the setting in full ("delivery.track_opens", not "track_opens"). Left as it is
// when the message already names `path` ("path.x: ..." or "path: ...").
Status YamlNamed(const Status& s, std::string_view path);
template <typename T>
Result<T> YamlPrefixed(Result<T> r, std::string_view path) {
  if (!r) return Err(YamlNamed(r.error(), path));
  return r;
}

// Refuses keys not in `known`, naming the first unknown one and the known ones.
Status YamlKnownKeys(const YamlDoc& doc, const YAML::Node& map,
                     std::initializer_list<std::string_view> known);

}  // namespace nudge::core
