#include "rules/condition_yaml.h"

namespace nudge::rules {

Result<std::shared_ptr<const Condition>> CompileYaml(const core::YamlDoc& doc,
                                                     const YAML::Node& node, const char* field,
                                                     const CompileOptions& options) {
  if (!node.IsScalar()) return Err(doc.ErrorAt(node, field, "expected a condition (text)"));
  auto c = Condition::Compile(node.Scalar(), options);
  if (!c)
    return Err(Status::Invalid(std::string(field) + ": " + c.error().message(),
                               doc.WhereInside(node, c.error().where())));
  return c;
}

}  // namespace nudge::rules
