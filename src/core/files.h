// Reading files: whole files, and the YAML documents of a workspace directory's folders.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace nudge::core {

// A whole file, or nullopt when it cannot be read.
std::optional<std::string> ReadFile(const std::filesystem::path& path);
// The *.yaml, *.yml and *.json files directly in `dir`, sorted; none when it is no directory.
std::vector<std::filesystem::path> YamlFiles(const std::filesystem::path& dir);

}  // namespace nudge::core
