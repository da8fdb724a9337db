// Reading the files of a workspace directory the way `nudge apply` sends them: message
// templates with their .liquid files inlined, image templates with their assets.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace nudge::cli {

// A message template made self-contained. The server stores templates as one document, so the
// parts kept in files beside the YAML are inlined:
//   html_file: welcome.html      (also text_file, body_file: paths relative to the YAML)
//   <id>.html.liquid, <id>.text.liquid, <id>.liquid (body) beside the YAML, when the YAML does
//   not set that part itself.
// The `*_file` lines become comments and the parts are appended as block scalars, so the YAML's
// own lines keep their numbers; MapError turns a position inside an appended part back into a
// position in its .liquid file.
struct TemplateDocument {
  std::string label;  // "templates/welcome.yaml"
  std::string id;     // the document's id, or the file's stem
  std::string channel;
  std::string text;  // what to send or parse
  struct Part {
    int first_line = 0;  // the first line of the part's content in `text` (1-based)
    int lines = 0;
    std::string label;  // "templates/welcome.html.liquid"
  };
  std::vector<Part> parts;

  // "templates/welcome.yaml:12:7" → "templates/welcome.html.liquid:3:5" when the position is
  // in an inlined part; `message` has every occurrence of the old position replaced.
  std::string MapError(std::string message, int line, int column) const;
  // The error's text, its "source:line:column" mapped as MapError does.
  std::string MapError(const Status& error) const;
};

// Errors: kNotFound for an unreadable file, kInvalidArgument (with file:line:column) for YAML
// that does not parse, a part given twice, or a *_file that cannot be read.
Result<TemplateDocument> ReadTemplateDocument(const std::filesystem::path& yaml,
                                              const std::string& label);

// An image template with its assets, as PUT /api/v1/images/{id} takes it:
// {"yaml": TEXT, "assets": {"hero.png": BASE64, ...}} with every file its `base`, `fallback`
// and layers' `font_file` name (plain file names beside the YAML).
Result<nlohmann::json> ReadImageDocument(const std::filesystem::path& yaml,
                                         const std::string& label);

}  // namespace nudge::cli
