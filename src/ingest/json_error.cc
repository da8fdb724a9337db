#include "ingest/json_error.h"

#include <cctype>
#include <nlohmann/json.hpp>
#include <string>

namespace nudge::ingest {

Status DescribeJsonError(std::string_view text) {
  try {
    auto parsed = nlohmann::json::parse(text);
    (void)parsed;
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is the 1-based position of the byte where parsing stopped.
    size_t line = 1, column = 1;
    size_t stop = e.byte == 0 ? 0 : std::min<size_t>(e.byte - 1, text.size());
    // The lexer may have read on past the bad token into whitespace: point back at the token.
    while (stop > 0 && (stop >= text.size() || isspace(static_cast<unsigned char>(text[stop]))))
      --stop;
    for (size_t i = 0; i < stop; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error while
    // parsing value - invalid literal; last read: 'tru,'" -> keep what follows "error while".
    const auto pos = what.find("error while ");
    if (pos != std::string::npos) what = "syntax error while " + what.substr(pos + 12);
    return Status::Invalid("malformed JSON: " + what,
                           std::to_string(line) + ":" + std::to_string(column));
  } catch (const std::exception& e) {
    return Status::Invalid(std::string("malformed JSON: ") + e.what(), "body");
  }
  return Status::Invalid("malformed JSON (invalid UTF-8 or nesting too deep)", "body");
}

}  // namespace nudge::ingest
