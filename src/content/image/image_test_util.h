// Test helpers for dynamic images: a stand-in for the product's Liquid rendering and paths to
// the fixtures.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "content/image/image.h"

namespace nudge::content::testing {

inline std::string FixturesDir() { return std::string(NUDGE_IMAGES_DIR) + "/fixtures"; }
inline std::string GoldenDir() { return std::string(NUDGE_IMAGES_DIR) + "/golden"; }
inline std::string DemoImagesDir() { return NUDGE_DEMO_IMAGES_DIR; }

// Replaces each {{ expression }} by vars[expression's first word] ("" when absent), ignoring
// filters: enough to feed fixture templates without the Liquid engine.
inline LayerTextFn Vars(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](size_t, std::string_view source) -> Result<std::string> {
    std::string out;
    size_t pos = 0;
    while (true) {
      const size_t open = source.find("{{", pos);
      if (open == std::string_view::npos) break;
      const size_t close = source.find("}}", open);
      if (close == std::string_view::npos) break;
      out.append(source.substr(pos, open - pos));
      std::string_view expr = source.substr(open + 2, close - open - 2);
      while (!expr.empty() && expr.front() == ' ') expr.remove_prefix(1);
      const size_t end = expr.find_first_of(" |");
      auto it = vars.find(std::string(expr.substr(0, end)));
      if (it != vars.end()) out += it->second;
      pos = close + 2;
    }
    out.append(source.substr(pos));
    return out;
  };
}

}  // namespace nudge::content::testing
