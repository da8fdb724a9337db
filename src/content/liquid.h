// Liquid: nudge's template language, Shopify's dialect as the Ruby gem `liquid` 5.x renders it
// (Debian's ruby-liquid 5.4 is the oracle; tests/liquid/ compares the two byte for byte).
//
//   auto tmpl = Template::Compile("Hi {{ contact.first_name | capitalize }}!");
//   if (!tmpl) ...;                          // kInvalidArgument, where = "line:column"
//   auto ctx = Context::FromJson(data);      // the contact, the event, ...
//   auto text = (*tmpl)->Render(*ctx, {.html = true});
//
// Compile once, render many: a compiled Template is immutable and may be rendered from any
// number of threads at once. A Context is immutable while renders read it, so one Context may
// also be shared by concurrent renders. Everything a render changes (assigned variables,
// counters, cycles) lives in that render only.
//
// Errors. Syntax errors, unknown tags and unknown filters (and filters given the wrong number of
// arguments) are reported by Compile with the line and column. At render time a missing
// variable renders empty, and an error inside a tag or output (a division by zero, comparing a
// number with a string) is written into the output as "Liquid error: ..." exactly as Ruby Liquid
// does, unless RenderOptions::strict_errors turns it into a failed render. Limits (output size,
// loop iterations, render time, partial depth, memory) always fail the render with kTooLarge.
//
// Safety. Templates reach no file and no network: {% render %} and {% include %} find partials
// only through the caller's PartialLookup. In HTML mode the output of {{ }}, {% echo %} and
// {% cycle %} is HTML-escaped unless the value is marked safe: values made by the `escape`,
// `escape_once` and `raw` filters (and text made by {% capture %}, which was escaped already).
//
// Differences from Ruby Liquid are listed in src/content/README.md.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/result.h"

namespace nudge::content {

namespace internal {
struct HashRep;
struct RangeRep;
struct LoopState;
class Arena;
class Renderer;
struct TemplateImpl;
}  // namespace internal

enum class ValueKind : uint8_t {
  kNil,
  kBool,
  kInt,
  kFloat,
  kString,
  kArray,
  kHash,
  kRange,   // (1..n)
  kObject,  // forloop, tablerowloop: only the engine makes and reads them
};

// Value: what a Liquid expression evaluates to. A 16-byte, trivially copyable view: strings,
// arrays and hashes point into memory owned elsewhere (the compiled template for literals, the
// Context for its data, the render for what filters make), so a Value is valid only as long as
// what it points into. Hashes keep their keys in insertion order, as Ruby does.
class Value {
 public:
  constexpr Value() = default;  // nil
  static Value Bool(bool b) {
    Value v(ValueKind::kBool);
    v.i_ = b ? 1 : 0;
    return v;
  }
  static Value Int(int64_t i) {
    Value v(ValueKind::kInt);
    v.i_ = i;
    return v;
  }
  static Value Float(double d) {
    Value v(ValueKind::kFloat);
    v.d_ = d;
    return v;
  }
  // A string over bytes that the caller keeps alive as long as the value is used (e.g. a part
  // of a filter's input), at most 4 GiB. Use FilterCall::String or Context::String to copy
  // bytes instead.
  static Value Borrowed(std::string_view s, bool safe = false) {
    Value v(ValueKind::kString);
    v.s_ = s.data();
    v.n_ = static_cast<uint32_t>(s.size());
    v.safe_ = safe;
    return v;
  }

  ValueKind kind() const { return kind_; }
  bool is_nil() const { return kind_ == ValueKind::kNil; }
  bool is_string() const { return kind_ == ValueKind::kString; }
  // Liquid truthiness: everything but nil and false is true (0 and "" are true).
  bool truthy() const { return !(kind_ == ValueKind::kNil || (kind_ == ValueKind::kBool && !i_)); }
  // Marked safe for HTML: not escaped again in HTML mode.
  bool safe() const { return safe_; }
  Value WithSafe(bool safe) const {
    Value v = *this;
    v.safe_ = safe;
    return v;
  }

  bool AsBool() const { return i_ != 0; }  // kBool
  int64_t AsInt() const { return i_; }     // kInt
  double AsFloat() const { return d_; }    // kFloat
  std::string_view AsString() const {      // kString; "" for other kinds
    return kind_ == ValueKind::kString ? std::string_view(s_, n_) : std::string_view();
  }

  // Arrays and hashes: the number of elements (0 for other kinds).
  size_t size() const { return kind_ == ValueKind::kArray || kind_ == ValueKind::kHash ? n_ : 0; }
  Value At(size_t i) const;                // array element i; nil when out of range
  std::string_view KeyAt(size_t i) const;  // hash entry i, in insertion order
  Value ValueAt(size_t i) const;           // hash entry i
  Value Find(std::string_view key) const;  // hash lookup; nil when absent or not a hash

  // Text as {{ value }} writes it in text mode: Ruby's to_s (arrays joined, hashes inspected,
  // floats as Ruby prints them: 1.0, 1.0e+16).
  std::string ToString() const;
  // Equality as Liquid's == (1 == 1.0, arrays and hashes by content).
  bool operator==(const Value& other) const;

 private:
  friend class internal::Arena;
  friend class internal::Renderer;
  friend class Context;
  friend struct ValueAccess;
  constexpr explicit Value(ValueKind kind) : kind_(kind) {}

  ValueKind kind_ = ValueKind::kNil;
  bool safe_ = false;
  uint32_t n_ = 0;  // string bytes, array or hash elements
  union {
    int64_t i_ = 0;
    double d_;
    const char* s_;
    const Value* a_;
    const internal::HashRep* h_;
    const internal::RangeRep* r_;
    internal::LoopState* o_;
  };
};
static_assert(sizeof(Value) == 16);

// Context: the variables a template sees. Ruby's Template#render(hash): top-level names such as
// `contact`, `event`, `message`. Globals are also visible inside partials rendered with
// {% render %}, which see nothing else of the caller's scope (Ruby's static environment).
// Building copies the data once into storage the Context owns; lookups during a render are a
// few string compares. Thread-compatible while being built, then read-only: concurrent
// renders may share one Context.
class Context {
 public:
  Context();
  ~Context();
  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;

  // Every member of a JSON object becomes a top-level variable; kInvalidArgument if `object`
  // is not an object. JSON numbers stay integers or floats as written (1 vs 1.0).
  static Result<Context> FromJson(const nlohmann::json& object);
  static Result<Context> FromJson(const nlohmann::ordered_json& object);  // keeps key order

  // Sets (or replaces) one top-level variable. The *Ordered forms keep the key order of
  // nested objects (nlohmann::json sorts keys; Ruby hashes keep insertion order).
  void Set(std::string_view name, const nlohmann::json& value);
  void Set(std::string_view name, Value value);  // scalars, or values made by String()
  void SetOrdered(std::string_view name, const nlohmann::ordered_json& value);
  void SetGlobal(std::string_view name, const nlohmann::json& value);
  void SetGlobalOrdered(std::string_view name, const nlohmann::ordered_json& value);

  // A string copied into this Context's storage.
  Value String(std::string_view s);

  // The top-level variable `name` (globals after the others); nil when absent.
  Value Find(std::string_view name) const;
  Value FindGlobal(std::string_view name) const;

 private:
  friend class internal::Renderer;
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

class FilterCall;

// A filter: input and arguments in, a value out. An error renders as "Liquid error: <message>"
// (or fails the render under strict_errors), exactly like the standard filters' errors.
using FilterFn = std::function<Result<Value>(FilterCall& call)>;
// Checks a filter's arguments when the template is compiled: gets each positional argument
// written as a literal ('png', 3), or null where the argument is a variable. An error fails the
// compile at the filter's position, so that a mistake the render would always make is found
// when the template is saved.
using FilterCheck = std::function<Status(const std::vector<std::optional<Value>>& literal_args)>;

// FilterCall: what a filter sees during one call. Valid only during that call; values it makes
// live until the render ends.
class FilterCall {
 public:
  const Value& input() const { return input_; }
  // Positional arguments (`| f: a, b`), keyword arguments excluded.
  size_t arg_count() const { return nargs_; }
  Value arg(size_t i) const { return i < nargs_ ? args_[i] : Value(); }
  // A keyword argument (`| f: key: value`); nil when not given.
  Value keyword(std::string_view name) const;
  // A string copied into the render's storage.
  Value String(std::string_view s, bool safe = false);
  // The current time (RenderOptions::clock), milliseconds since the epoch.
  core::Millis now() const;
  // True when rendering in HTML mode.
  bool html() const;
  // A top-level variable of the render's context (e.g. `contact` for its time zone).
  Value Variable(std::string_view name) const;

 private:
  friend class internal::Renderer;
  FilterCall(internal::Renderer& r, Value input, const Value* args, size_t nargs, Value kwargs)
      : r_(r), input_(input), args_(args), nargs_(nargs), kwargs_(kwargs) {}
  internal::Renderer& r_;
  Value input_;
  const Value* args_;
  size_t nargs_;
  Value kwargs_;  // a hash, or nil
};

// FilterRegistry: the filters templates may use, found by name. Starts with every standard
// filter of Liquid 5 (plus `json` and `raw`); the caller adds its own before compiling.
// Thread-compatible while being built; share it read-only (shared_ptr<const>) afterwards.
class FilterRegistry {
 public:
  FilterRegistry();
  ~FilterRegistry();
  // Registers `name` accepting min_args..max_args arguments (keyword arguments count as one,
  // as in Ruby). kAlreadyExists when the name is taken (standard filters included);
  // kInvalidArgument for a name that is not an identifier.
  Status Add(std::string_view name, FilterFn fn, int min_args = 0, int max_args = 8,
             FilterCheck check = nullptr);
  bool Has(std::string_view name) const;
  std::vector<std::string> Names() const;  // sorted

  // The standard filters only, shared.
  static std::shared_ptr<const FilterRegistry> Standard();

  struct Entry;
  const Entry* Find(std::string_view name) const;

 private:
  std::vector<std::unique_ptr<Entry>> entries_;  // sorted by name
};

struct CompileOptions {
  // The filters templates may use; null means the standard ones.
  std::shared_ptr<const FilterRegistry> filters;
};

class Template;

// PartialLookup: where {% render 'name' %} and {% include 'name' %} find their templates. The
// caller compiles partials (with the same filters) and keeps them; nothing else is reachable.
// Must be thread-safe if renders run concurrently.
class PartialLookup {
 public:
  virtual ~PartialLookup() = default;
  // The partial called `name`, or kNotFound (rendered as "Liquid error: No such template
  // 'name'", as Ruby's file systems report it).
  virtual Result<std::shared_ptr<const Template>> Find(std::string_view name) const = 0;
};

// PartialMap: a PartialLookup over a fixed set, for tests and for `nudge render`.
// Thread-compatible while being filled, then thread-safe for Find.
class PartialMap final : public PartialLookup {
 public:
  // Compiles `source` as partial `name`; compile errors are returned with the name prefixed.
  Status Add(std::string_view name, std::string_view source, const CompileOptions& options = {});
  Result<std::shared_ptr<const Template>> Find(std::string_view name) const override;

 private:
  std::vector<std::pair<std::string, std::shared_ptr<const Template>>> partials_;
};

struct RenderOptions {
  // HTML mode: escape {{ }} output unless marked safe. Text mode renders as Ruby does.
  bool html = false;
  // Render errors fail the render (kInvalidArgument, where = "line:column") instead of being
  // written into the output as "Liquid error: ...".
  bool strict_errors = false;
  const PartialLookup* partials = nullptr;  // none: every partial is missing
  const core::Clock* clock = nullptr;       // for "now"/"today"; null: the system clock

  // Limits; passing one fails the render with kTooLarge and a message naming it.
  size_t max_output_bytes = 1 << 20;
  uint64_t max_loop_iterations = 100'000;  // all loops of the render together
  int64_t max_render_micros = 1'000'000;   // checked every few loop iterations
  int max_partial_depth = 16;              // render/include nesting
  size_t max_memory_bytes = 64 << 20;      // values made while rendering
};

// Template: one compiled Liquid template. Immutable; Render may run on many threads at once.
class Template {
 public:
  // Parses `source`. Errors: kInvalidArgument with where = "line:column" (1-based; columns
  // count characters) and a message naming what is wrong.
  static Result<std::shared_ptr<const Template>> Compile(std::string_view source,
                                                         const CompileOptions& options = {});
  ~Template();
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  Result<std::string> Render(const Context& context, const RenderOptions& options = {}) const;
  // Appends to *out (which keeps its capacity between calls); on error *out holds what was
  // rendered before the error.
  Status RenderTo(const Context& context, const RenderOptions& options, std::string* out) const;

  const std::string& source() const;
  // Names of partials given as literal strings to {% render %} / {% include %}, each once, so
  // that whoever stores the template can check they exist.
  const std::vector<std::string>& partial_names() const;

  explicit Template(std::unique_ptr<internal::TemplateImpl> impl);
  const internal::TemplateImpl& impl() const { return *impl_; }

 private:
  std::unique_ptr<internal::TemplateImpl> impl_;
};

}  // namespace nudge::content
