// The renderer: the state of one render (Ruby's Liquid::Context plus the limits), how values
// are looked up, how expressions, filters and conditions evaluate, and how bodies write their
// output. One Renderer per render, on one thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "content/internal/ast.h"
#include "content/liquid.h"

namespace nudge::content {

// The data of a Context: top-level variables and globals, in storage it owns.
struct Context::Rep {
  internal::Arena arena;
  struct Vars {
    std::vector<internal::HashEntry> entries;
    std::unordered_map<std::string_view, uint32_t> index;  // once there are more than a few
    const Value* Find(std::string_view name) const;
    void Set(std::string_view name, Value value, internal::Arena& arena);
  };
  Vars vars;
  Vars globals;
};

namespace internal {

struct Var {
  std::string_view name;
  Value value;
};

// One Ruby Liquid::Context: a template's scopes and registers. {% render %} makes a new one.
struct Frame {
  std::vector<Var> outer;       // scopes.last: where assign and capture write
  std::vector<Var> inner;       // pushed scopes (loops, include), innermost last
  std::vector<uint32_t> marks;  // where each pushed scope starts in `inner`
  std::vector<Var> counters;    // increment/decrement (environments.first)
  bool sees_data = true;        // false inside {% render %}: only globals and parameters
  bool include_disabled = false;
  std::vector<bool> interrupts;  // pending break (true) / continue (false)
  std::vector<std::pair<std::string_view, int64_t>> for_offsets;  // offset: continue
  std::vector<std::pair<std::string, int64_t>> cycles;
  std::vector<LoopState*> for_stack;
  bool has_ifchanged = false;
  std::string ifchanged;
};

class Renderer {
 public:
  Renderer(const RenderOptions& options, const Context& context, std::string& out);

  // ---- rendering
  Flow RenderTemplate(const TemplateImpl& impl);
  Flow RenderBody(const Body& body);
  // Writes a value as {{ }} does (escaped in HTML mode unless safe).
  void Output(const Value& v);

  // ---- errors and limits
  Flow Fail(std::string message) {
    error_ = std::move(message);
    return Flow::kError;
  }
  bool FailB(std::string message) {
    error_ = std::move(message);
    return false;
  }
  Flow Fatal(std::string message);
  // Counts one loop iteration against the limits (and looks at the clock now and then).
  bool CountIteration();
  // After anything that allocates: turns an exhausted memory budget into a fatal error.
  bool CheckMemory();
  const Status& fatal() const { return fatal_; }
  const std::string& error() const { return error_; }
  int depth = 0;

  // ---- values
  bool Eval(const Expr& e, Value* out);
  bool EvalFiltered(const Filtered& f, Value* out);
  // Condition#evaluate: the value of the last comparison evaluated.
  bool EvalCondition(const Condition& c, Value* out);
  Value FindVariable(std::string_view name) const;
  // Liquid's variable lookup of one key (a.b, a[0], a.size).
  Value LookupKey(const Value& object, const Value& key, bool command);
  // Ruby's object[property] as the array filters use it; false with *responds = false when the
  // object has no [] (nil, floats), false with an error set when Ruby raises TypeError.
  bool Property(const Value& item, const Value& property, Value* out, bool* responds);
  // Liquid's InputIterator: arrays flattened, a hash as one element, ranges expanded, nil as
  // nothing, anything else as itself.
  bool ToList(const Value& v, std::vector<Value>& out);
  // Liquid's Utils.slice_collection over what `for` and `tablerow` iterate.
  bool Slice(const Value& collection, int64_t from, std::optional<int64_t> to,
             std::vector<Value>& out);
  Value Pair(std::string_view key, const Value& value);

  void SetOuter(std::string_view name, Value v);
  void SetInner(std::string_view name, Value v);
  void PushScope() { frame->marks.push_back(static_cast<uint32_t>(frame->inner.size())); }
  void PopScope() {
    frame->inner.resize(frame->marks.back());
    frame->marks.pop_back();
  }

  core::Millis Now();
  bool html() const { return options.html; }

  const RenderOptions& options;
  const Context::Rep& context;
  std::string& out;
  Arena arena;
  Frame* frame = nullptr;
  const TemplateImpl* current = nullptr;  // whose nodes are rendering, for positions
  std::vector<std::shared_ptr<const Template>> partials;  // kept alive during the render
  std::string scratch;                                    // reusable buffer for filters

 private:
  bool ApplyFilter(const FilterApp& app, Value* v);
  bool Compare(CmpOp op, const Value& l, const Value& r, bool l_empty, bool l_blank, bool r_empty,
               bool r_blank, Value* out);

  std::string error_;
  Status fatal_;
  uint64_t iterations_ = 0;
  int64_t deadline_ = 0;
  std::optional<core::Millis> now_;
};

// Appends s HTML-escaped (& < > " ').
void AppendEscaped(std::string& out, std::string_view s);

}  // namespace internal
}  // namespace nudge::content
