// The tag nodes. The parser (parser.cc) fills them; the renderer (render.cc) implements Render.
// Each is named after the Ruby class it reproduces.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "content/internal/ast.h"

namespace nudge::content::internal {

// Liquid::Variable ({{ }}) and Liquid::Echo.
class OutputNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  Filtered value;
};

// Liquid::Assign.
class AssignNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  std::string_view to;
  Filtered from;
};

// Liquid::Capture.
class CaptureNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  std::string_view to;
  Body body;
};

// Liquid::If and Liquid::Unless (the first branch negated).
class IfNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  struct Branch {
    std::unique_ptr<Condition> cond;  // null: else
    Body body;
  };
  std::vector<Branch> branches;
  bool unless = false;
};

// Liquid::Case: every `when` value is its own condition sharing the branch's body.
class CaseNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  struct When {
    bool is_else = false;
    Expr value;
    const Body* body = nullptr;
  };
  Expr left;
  std::vector<When> whens;
  std::vector<std::unique_ptr<Body>> bodies;
};

// Liquid::For.
class ForNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  std::string_view var;
  Expr collection;
  std::string name;  // "var-collection": forloop.name and the offset:continue key
  bool reversed = false;
  std::unique_ptr<Expr> limit;
  std::unique_ptr<Expr> offset;
  bool offset_continue = false;
  Body body;
  std::unique_ptr<Body> else_body;
};

// Liquid::TableRow.
class TablerowNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  std::string_view var;
  Expr collection;
  std::unique_ptr<Expr> cols, limit, offset;
  Body body;
};

// Liquid::Cycle.
class CycleNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  std::unique_ptr<Expr> group;  // named: evaluated for the key
  std::string key;              // unnamed: the key Ruby derives from the values
  std::vector<Expr> values;
};

// Liquid::Increment / Liquid::Decrement.
class CounterNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  std::string_view name;
  bool decrement = false;
};

// Liquid::Raw.
class RawNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  std::string text;
};

// Liquid::Comment and the inline `#` comment: renders nothing, but is a node as in Ruby (so a
// following {{- does not trim the text before it).
class NoopNode final : public Node {
 public:
  Flow Render(Renderer&) const override { return Flow::kOk; }
};

// Liquid::Break / Liquid::Continue.
class InterruptNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  bool is_break = true;
};

// Liquid::Ifchanged.
class IfchangedNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  Body body;
};

// Liquid::Include and Liquid::Render.
class PartialNode final : public Node {
 public:
  Flow Render(Renderer& r) const override;
  bool isolated = false;  // render: own scope, sees only globals and its parameters
  Expr template_name;     // render: a literal string
  std::unique_ptr<Expr> variable;
  bool is_for = false;
  std::string_view alias;
  std::vector<std::pair<std::string_view, Expr>> attributes;
};

}  // namespace nudge::content::internal
