// Compiling a condition written as a YAML scalar, with its errors placed in the file
// (source:line:column) rather than in the condition alone. Include from .cc files only.
#pragma once

#include <memory>

#include "core/yaml.h"
#include "rules/condition.h"

namespace nudge::rules {

Result<std::shared_ptr<const Condition>> CompileYaml(const core::YamlDoc& doc,
                                                     const YAML::Node& node, const char* field,
                                                     const CompileOptions& options = {});

}  // namespace nudge::rules
