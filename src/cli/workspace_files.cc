#include "cli/workspace_files.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <optional>
#include <set>

#include "core/crypto.h"
#include "core/files.h"

namespace nudge::cli {
namespace {

namespace fs = std::filesystem;
using core::ReadFile;
using nlohmann::json;

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::string cur;
  for (char ch : text) {
    if (ch == '\n') {
      lines.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) lines.push_back(std::move(cur));
  return lines;
}

Status YamlError(const std::string& label, const YAML::Exception& e) {
  return Status::Invalid(e.msg, label + ":" + std::to_string(e.mark.line + 1) + ":" +
                                    std::to_string(e.mark.column + 1));
}

Status At(const std::string& label, const YAML::Node& node, const std::string& message) {
  const YAML::Mark m = node.Mark();
  return Status::Invalid(
      message, label + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1));
}

}  // namespace

std::string TemplateDocument::MapError(std::string message, int line, int column) const {
  for (const Part& p : parts) {
    if (line < p.first_line || line >= p.first_line + p.lines) continue;
    const std::string from = label + ":" + std::to_string(line) + ":" + std::to_string(column);
    const std::string to = p.label + ":" + std::to_string(line - p.first_line + 1) + ":" +
                           std::to_string(std::max(1, column - 2));
    for (size_t at = message.find(from); at != std::string::npos;
         at = message.find(from, at + to.size()))
      message.replace(at, from.size(), to);
    if (message.find(to) == std::string::npos) message = to + ": " + message;
    return message;
  }
  return message;
}

std::string TemplateDocument::MapError(const Status& error) const {
  const std::string& where = error.where();
  const size_t c2 = where.rfind(':');
  const size_t c1 =
      c2 == std::string::npos || c2 == 0 ? std::string::npos : where.rfind(':', c2 - 1);
  if (c1 == std::string::npos) return error.ToString();
  return MapError(error.ToString(), std::atoi(where.c_str() + c1 + 1),
                  std::atoi(where.c_str() + c2 + 1));
}

Result<TemplateDocument> ReadTemplateDocument(const fs::path& yaml, const std::string& label) {
  auto text = ReadFile(yaml);
  if (!text) return Err(Status::NotFound(label + ": cannot read the file"));
  TemplateDocument doc;
  doc.label = label;
  doc.id = yaml.stem().string();
  doc.text = *text;
  YAML::Node root;
  try {
    root = YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    return Err(YamlError(label, e));  // the server would say the same
  }
  if (!root.IsMap()) return doc;  // the server names what is wrong
  if (root["id"] && root["id"].IsScalar()) doc.id = root["id"].as<std::string>();
  if (root["channel"] && root["channel"].IsScalar())
    doc.channel = root["channel"].as<std::string>();

  // Which parts come from files: the *_file keys, then the files beside the YAML.
  struct Inline {
    std::string key, label;
    fs::path file;
  };
  std::vector<Inline> inlines;
  std::set<int> comment_lines;  // 0-based lines of *_file keys
  const fs::path dir = yaml.parent_path();
  const std::string label_dir =
      label.find('/') == std::string::npos ? "" : label.substr(0, label.rfind('/') + 1);
  for (const char* part : {"html", "text", "body"}) {
    const std::string file_key = std::string(part) + "_file";
    const YAML::Node f = root[file_key];
    if (!f) continue;
    if (!f.IsScalar()) return Err(At(label, f, file_key + ": expected a file name"));
    if (root[part])
      return Err(At(label, f, std::string("both ") + part + " and " + file_key + " are set"));
    const std::string name = f.as<std::string>();
    inlines.push_back({part, label_dir + name, dir / name});
    for (YAML::const_iterator it = root.begin(); it != root.end(); ++it) {
      if (it->first.as<std::string>() == file_key) {
        const int first = it->first.Mark().line;
        comment_lines.insert(first);
        // A value written on the lines after the key ("html_file:\n  x.html").
        for (int l = first + 1; l <= it->second.Mark().line; ++l) comment_lines.insert(l);
      }
    }
  }
  const std::string stem = yaml.stem().string();
  const std::pair<const char*, std::string> beside[] = {
      {"html", stem + ".html.liquid"}, {"text", stem + ".text.liquid"}, {"body", stem + ".liquid"}};
  for (const auto& [part, name] : beside) {
    std::error_code ec;
    if (!fs::is_regular_file(dir / name, ec)) continue;
    bool taken = root[part].IsDefined();
    for (const auto& i : inlines) taken = taken || i.key == part;
    if (taken)
      return Err(Status::Invalid(
          std::string("the template sets ") + part + " and " + name + " is beside it: keep one",
          label));
    inlines.push_back({part, label_dir + name, dir / name});
  }
  if (inlines.empty()) return doc;

  std::vector<std::string> lines = SplitLines(*text);
  for (int l : comment_lines) {
    if (l >= 0 && static_cast<size_t>(l) < lines.size()) lines[l] = "# " + lines[l];
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  int line_no = static_cast<int>(lines.size());
  for (const Inline& i : inlines) {
    auto content = ReadFile(i.file);
    if (!content)
      return Err(Status::Invalid("cannot read " + i.file.string(), label + ": " + i.key));
    // Keep the content exactly: chomping by how many newlines end it.
    size_t trailing = 0;
    while (trailing < content->size() && (*content)[content->size() - 1 - trailing] == '\n')
      ++trailing;
    const char* chomp = trailing == 0 ? "-" : trailing == 1 ? "" : "+";
    // SplitLines keeps the empty lines between the trailing newlines, which |+ keeps.
    std::vector<std::string> body = SplitLines(*content);
    out += i.key + ": |2" + chomp + "\n";
    ++line_no;
    TemplateDocument::Part p;
    p.first_line = line_no + 1;
    p.label = i.label;
    for (const auto& l : body) {
      out += l.empty() ? "\n" : "  " + l + "\n";
      ++line_no;
    }
    p.lines = static_cast<int>(body.size());
    doc.parts.push_back(p);
  }
  doc.text = std::move(out);
  return doc;
}

Result<json> ReadImageDocument(const fs::path& yaml, const std::string& label) {
  auto text = ReadFile(yaml);
  if (!text) return Err(Status::NotFound(label + ": cannot read the file"));
  json body{{"yaml", *text}, {"assets", json::object()}};
  YAML::Node root;
  try {
    root = YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    return Err(YamlError(label, e));
  }
  if (!root.IsMap()) return body;
  std::vector<YAML::Node> refs;
  for (const char* key : {"base", "fallback"})
    if (root[key] && root[key].IsScalar()) refs.push_back(root[key]);
  if (root["layers"] && root["layers"].IsSequence()) {
    for (const auto& layer : root["layers"]) {
      if (layer.IsMap() && layer["font_file"] && layer["font_file"].IsScalar())
        refs.push_back(layer["font_file"]);
    }
  }
  const fs::path dir = yaml.parent_path();
  for (const auto& ref : refs) {
    const std::string name = ref.as<std::string>();
    if (name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
        name.empty() || name[0] == '.')
      return Err(At(label, ref, "assets are plain file names beside the YAML, not '" + name + "'"));
    auto bytes = ReadFile(dir / name);
    if (!bytes) return Err(At(label, ref, "cannot read " + (dir / name).string()));
    body["assets"][name] = core::Base64Encode(*bytes);
  }
  return body;
}

}  // namespace nudge::cli
