// The compiled form of a Liquid template: expressions, filter chains, conditions and the tag
// nodes, as the parser builds them and the renderer walks them. Immutable once compiled.
// Everything here mirrors a class of the Ruby gem (noted beside each) so that behaviour can be
// checked against it line by line.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "content/internal/value_rep.h"
#include "content/liquid.h"

namespace nudge::content {

// A filter as registered (standard or the caller's).
struct FilterRegistry::Entry {
  using Builtin = bool (*)(internal::Renderer& r, const Value& input, const Value* args, size_t n,
                           Value* out);
  std::string name;
  int min_args = 0;
  int max_args = 0;
  Builtin builtin = nullptr;  // standard filters
  FilterFn custom;            // the caller's
  FilterCheck check;          // the caller's compile-time check, if any
};

namespace internal {

class Renderer;

enum class Flow : uint8_t {
  kOk,
  kError,  // a Liquid error: the enclosing body writes "Liquid error: ..." and goes on
  kFatal,  // a limit was passed: stop rendering
};

// Liquid::Expression, Liquid::VariableLookup, Liquid::RangeLookup, Condition::MethodLiteral.
struct Expr {
  enum class Kind : uint8_t { kLiteral, kLookup, kRange, kEmpty, kBlank };
  struct Part {
    Value key;                  // a literal key: "name" after a dot, or [0], ["x"]
    std::unique_ptr<Expr> dyn;  // [expression]
    bool command = false;       // .size/.first/.last written with a dot
  };
  Kind kind = Kind::kLiteral;
  Value literal;
  std::string_view name;            // kLookup: root variable
  std::unique_ptr<Expr> name_expr;  // kLookup: [expression] as the root
  std::vector<Part> parts;          // kLookup
  std::unique_ptr<Expr> lo, hi;     // kRange with a variable end
  uint32_t pos = 0;
};

// One `| filter: args` of a chain.
struct FilterApp {
  const FilterRegistry::Entry* filter = nullptr;
  std::vector<Expr> args;
  std::vector<std::pair<std::string_view, Expr>> kwargs;
  uint32_t pos = 0;
};

// Liquid::Variable: an expression and its filters ({{ }}, echo, assign).
struct Filtered {
  bool has_expr = false;  // {{ }} renders nothing
  Expr expr;
  std::vector<FilterApp> filters;
};

enum class CmpOp : uint8_t { kNone, kEq, kNe, kLt, kGt, kLe, kGe, kContains };

// Liquid::Condition: `left op right`, chained with and/or to the right.
struct Condition {
  enum class Rel : uint8_t { kNone, kAnd, kOr };
  Expr left;
  CmpOp op = CmpOp::kNone;
  Expr right;
  Rel rel = Rel::kNone;
  std::unique_ptr<Condition> child;
};

class Node;

// Liquid::BlockBody: text and nodes in order.
struct Body {
  struct Item {
    std::string_view text;       // when node is null
    std::unique_ptr<Node> node;  // a tag or an output
  };
  std::vector<Item> items;
  bool blank = true;  // only whitespace text and blank tags
  // Ruby's remove_blank_strings, for a block whose bodies are all blank.
  void RemoveBlankStrings();
};

class Node {
 public:
  virtual ~Node() = default;
  virtual Flow Render(Renderer& r) const = 0;
  uint32_t pos = 0;    // byte offset of the tag in the template source
  bool blank = false;  // Ruby's blank?: its errors are not written out
};

// A template's parsed form and what it keeps alive.
struct TemplateImpl {
  std::string source;
  Body body;
  std::vector<std::string> partial_names;
  std::shared_ptr<const FilterRegistry> filters;
  std::vector<std::unique_ptr<RangeRep>> ranges;  // literal (1..3)
};

// "line:column" (1-based, columns in characters) of a byte offset.
std::string Position(std::string_view source, size_t offset);

}  // namespace internal
}  // namespace nudge::content
