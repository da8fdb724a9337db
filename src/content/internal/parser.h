// The Liquid parser: splits the source into text, {{ }} and {% %} tokens exactly as Ruby's
// Liquid::Tokenizer does, applies whitespace control, and builds the nodes with Ruby's strict
// grammar for the markup inside the delimiters. Errors: kInvalidArgument, where = "line:column".
#pragma once

#include "content/internal/ast.h"
#include "core/result.h"

namespace nudge::content::internal {

// Parses impl->source into impl->body with the filters of impl->filters.
Status Parse(TemplateImpl* impl);

}  // namespace nudge::content::internal
