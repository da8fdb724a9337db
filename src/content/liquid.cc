#include "content/liquid.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "content/internal/ast.h"
#include "content/internal/filters.h"
#include "content/internal/parser.h"
#include "content/internal/render.h"
#include "content/internal/ruby.h"

namespace nudge::content {

using internal::Arena;
using internal::HashEntry;
using internal::HashRep;

// ---------------------------------------------------------------------------------------------
// Value

Value Value::At(size_t i) const {
  if (kind_ != ValueKind::kArray || i >= n_) return Value();
  return a_[i];
}

std::string_view Value::KeyAt(size_t i) const {
  if (kind_ != ValueKind::kHash || i >= n_) return {};
  return h_->entries[i].key_view();
}

Value Value::ValueAt(size_t i) const {
  if (kind_ != ValueKind::kHash || i >= n_) return Value();
  return h_->entries[i].value;
}

Value Value::Find(std::string_view key) const {
  if (kind_ != ValueKind::kHash) return Value();
  const HashEntry* e = h_->Find(key);
  return e != nullptr ? e->value : Value();
}

std::string Value::ToString() const {
  std::string out;
  internal::AppendOutput(out, *this);
  return out;
}

bool Value::operator==(const Value& other) const { return internal::Equal(*this, other); }

namespace internal {

uint64_t HashBytes(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

const HashEntry* HashRep::Find(std::string_view key) const {
  if (mask == 0) {
    for (uint32_t i = 0; i < size; ++i) {
      const HashEntry& e = entries[i];
      if (e.key_len == key.size() && std::memcmp(e.key, key.data(), key.size()) == 0) return &e;
    }
    return nullptr;
  }
  for (uint64_t slot = HashBytes(key) & mask;; slot = (slot + 1) & mask) {
    const uint32_t at = index[slot];
    if (at == 0) return nullptr;
    const HashEntry& e = entries[at - 1];
    if (e.key_view() == key) return &e;
  }
}

void* Arena::Grow(size_t bytes) {
  if (!Fits(bytes)) return nullptr;
  const size_t block = std::max<size_t>(bytes, blocks_.empty() ? 4096 : 32768);
  blocks_.push_back(std::make_unique<char[]>(block));
  used_ += block;
  cur_ = blocks_.back().get();
  end_ = cur_ + block;
  char* p = cur_;
  cur_ += bytes;
  return p;
}

Value Arena::Array(const Value* items, size_t n) {
  if (n == 0) return ValueAccess::Array(nullptr, 0);
  Value* copy = AllocArray<Value>(n);
  if (copy == nullptr) return Value();
  std::copy(items, items + n, copy);
  return ValueAccess::Array(copy, static_cast<uint32_t>(n));
}

Value Arena::Hash(const std::vector<HashEntry>& entries) {
  auto* rep = static_cast<HashRep*>(Alloc(sizeof(HashRep)));
  if (rep == nullptr) return Value();
  new (rep) HashRep();
  HashEntry* copy = entries.empty() ? nullptr : AllocArray<HashEntry>(entries.size());
  if (!entries.empty() && copy == nullptr) return Value();
  std::copy(entries.begin(), entries.end(), copy);
  rep->entries = copy;
  rep->size = static_cast<uint32_t>(entries.size());
  if (entries.size() > 8) {
    size_t cap = 16;
    while (cap < entries.size() * 2) cap *= 2;
    uint32_t* index = AllocArray<uint32_t>(cap);
    if (index == nullptr) return Value();
    std::fill(index, index + cap, 0u);
    const uint64_t mask = cap - 1;
    for (uint32_t i = 0; i < rep->size; ++i) {
      uint64_t slot = HashBytes(copy[i].key_view()) & mask;
      while (index[slot] != 0) slot = (slot + 1) & mask;
      index[slot] = i + 1;
    }
    rep->index = index;
    rep->mask = static_cast<uint32_t>(mask);
  }
  return ValueAccess::Hash(rep, rep->size);
}

Value Arena::Range(int64_t lo, int64_t hi) {
  auto* r = static_cast<RangeRep*>(Alloc(sizeof(RangeRep)));
  if (r == nullptr) return Value();
  r->lo = lo;
  r->hi = hi;
  return ValueAccess::Range(r);
}

}  // namespace internal

// ---------------------------------------------------------------------------------------------
// Context

namespace {

// Data nested deeper than this reads as nil in templates: rendering and printing values recurse,
// and no template reaches that deep.
constexpr int kMaxValueDepth = 100;

template <typename Json>
Value FromJsonValue(const Json& j, Arena& arena, int depth = 0) {
  if (depth > kMaxValueDepth) return Value();
  switch (j.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      return Value();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = j.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value::Int(static_cast<int64_t>(u));
      return Value::Float(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::Float(j.template get<double>());
    case nlohmann::json::value_t::string:
      return arena.String(j.template get_ref<const std::string&>());
    case nlohmann::json::value_t::binary:
      return Value();
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJsonValue(e, arena, depth + 1));
      return arena.Array(items);
    }
    case nlohmann::json::value_t::object: {
      std::vector<HashEntry> entries;
      entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) {
        const Value key = arena.String(it.key());
        entries.push_back({ValueAccess::chars(key), static_cast<uint32_t>(it.key().size()),
                           FromJsonValue(it.value(), arena, depth + 1)});
      }
      return arena.Hash(entries);
    }
  }
  return Value();
}

template <typename Json>
Result<Context> ContextFromJson(const Json& object) {
  if (!object.is_object()) {
    return Err(Status::Invalid("the template context must be a JSON object"));
  }
  Context ctx;
  for (auto it = object.begin(); it != object.end(); ++it) {
    if constexpr (std::is_same_v<Json, nlohmann::json>) {
      ctx.Set(it.key(), it.value());
    } else {
      ctx.SetOrdered(it.key(), it.value());
    }
  }
  return ctx;
}

}  // namespace

const Value* Context::Rep::Vars::Find(std::string_view name) const {
  if (!index.empty()) {
    auto it = index.find(name);
    return it == index.end() ? nullptr : &entries[it->second].value;
  }
  for (const auto& e : entries) {
    if (e.key_len == name.size() && std::memcmp(e.key, name.data(), name.size()) == 0) {
      return &e.value;
    }
  }
  return nullptr;
}

void Context::Rep::Vars::Set(std::string_view name, Value value, internal::Arena& arena) {
  for (auto& e : entries) {
    if (e.key_view() == name) {
      e.value = value;
      return;
    }
  }
  const Value key = arena.String(name);
  entries.push_back({ValueAccess::chars(key), static_cast<uint32_t>(name.size()), value});
  if (entries.size() > 8) {
    index.clear();
    for (uint32_t i = 0; i < entries.size(); ++i) index.emplace(entries[i].key_view(), i);
  }
}

Context::Context() : rep_(std::make_unique<Rep>()) {}
Context::~Context() = default;
Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;

Result<Context> Context::FromJson(const nlohmann::json& object) { return ContextFromJson(object); }
Result<Context> Context::FromJson(const nlohmann::ordered_json& object) {
  return ContextFromJson(object);
}

void Context::Set(std::string_view name, const nlohmann::json& value) {
  rep_->vars.Set(name, FromJsonValue(value, rep_->arena), rep_->arena);
}
void Context::SetOrdered(std::string_view name, const nlohmann::ordered_json& value) {
  rep_->vars.Set(name, FromJsonValue(value, rep_->arena), rep_->arena);
}
void Context::Set(std::string_view name, Value value) { rep_->vars.Set(name, value, rep_->arena); }
void Context::SetGlobal(std::string_view name, const nlohmann::json& value) {
  rep_->globals.Set(name, FromJsonValue(value, rep_->arena), rep_->arena);
}
void Context::SetGlobalOrdered(std::string_view name, const nlohmann::ordered_json& value) {
  rep_->globals.Set(name, FromJsonValue(value, rep_->arena), rep_->arena);
}

Value Context::String(std::string_view s) { return rep_->arena.String(s); }

Value Context::Find(std::string_view name) const {
  const Value* v = rep_->vars.Find(name);
  if (v != nullptr && !v->is_nil()) return *v;
  return FindGlobal(name);
}

Value Context::FindGlobal(std::string_view name) const {
  const Value* v = rep_->globals.Find(name);
  return v != nullptr ? *v : Value();
}

// ---------------------------------------------------------------------------------------------
// Filters

Value FilterCall::keyword(std::string_view name) const { return kwargs_.Find(name); }
Value FilterCall::String(std::string_view s, bool safe) { return r_.arena.String(s, safe); }
core::Millis FilterCall::now() const { return r_.Now(); }
bool FilterCall::html() const { return r_.html(); }
Value FilterCall::Variable(std::string_view name) const { return r_.FindVariable(name); }

FilterRegistry::FilterRegistry() {
  for (const auto& b : internal::BuiltinFilters()) {
    auto e = std::make_unique<Entry>();
    e->name = std::string(b.name);
    e->min_args = b.min_args;
    e->max_args = b.max_args;
    e->builtin = b.fn;
    entries_.push_back(std::move(e));
  }
  std::sort(entries_.begin(), entries_.end(),
            [](const auto& a, const auto& b) { return a->name < b->name; });
}

FilterRegistry::~FilterRegistry() = default;

Status FilterRegistry::Add(std::string_view name, FilterFn fn, int min_args, int max_args,
                           FilterCheck check) {
  bool ok = !name.empty() && ((name[0] >= 'a' && name[0] <= 'z') ||
                              (name[0] >= 'A' && name[0] <= 'Z') || name[0] == '_');
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-');
  }
  if (!ok) return Status::Invalid("'" + std::string(name) + "' is not a valid filter name");
  if (!fn) return Status::Invalid("filter '" + std::string(name) + "' has no function");
  if (min_args < 0 || max_args < min_args) {
    return Status::Invalid("filter '" + std::string(name) + "': bad argument counts");
  }
  if (Find(name) != nullptr) {
    return Status(Code::kAlreadyExists, "a filter named '" + std::string(name) + "' exists");
  }
  auto e = std::make_unique<Entry>();
  e->name = std::string(name);
  e->min_args = min_args;
  e->max_args = max_args;
  e->custom = std::move(fn);
  e->check = std::move(check);
  auto at = std::lower_bound(entries_.begin(), entries_.end(), e->name,
                             [](const auto& a, const std::string& n) { return a->name < n; });
  entries_.insert(at, std::move(e));
  return Status::Ok();
}

const FilterRegistry::Entry* FilterRegistry::Find(std::string_view name) const {
  auto at = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const auto& a, std::string_view n) { return a->name < n; });
  if (at == entries_.end() || (*at)->name != name) return nullptr;
  return at->get();
}

bool FilterRegistry::Has(std::string_view name) const { return Find(name) != nullptr; }

std::vector<std::string> FilterRegistry::Names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e->name);
  return out;
}

std::shared_ptr<const FilterRegistry> FilterRegistry::Standard() {
  static const std::shared_ptr<const FilterRegistry> kStandard =
      std::make_shared<const FilterRegistry>();
  return kStandard;
}

// ---------------------------------------------------------------------------------------------
// Templates

Template::Template(std::unique_ptr<internal::TemplateImpl> impl) : impl_(std::move(impl)) {}
Template::~Template() = default;

Result<std::shared_ptr<const Template>> Template::Compile(std::string_view source,
                                                          const CompileOptions& options) {
  if (source.size() > UINT32_MAX / 2) return Err(Status(Code::kTooLarge, "template too large"));
  auto impl = std::make_unique<internal::TemplateImpl>();
  impl->source.assign(source);
  impl->filters = options.filters ? options.filters : FilterRegistry::Standard();
  NUDGE_TRY(internal::Parse(impl.get()));
  return std::shared_ptr<const Template>(std::make_shared<Template>(std::move(impl)));
}

Status Template::RenderTo(const Context& context, const RenderOptions& options,
                          std::string* out) const {
  internal::Renderer r(options, context, *out);
  internal::Frame frame;
  r.frame = &frame;
  const internal::Flow f = r.RenderTemplate(*impl_);
  if (f == internal::Flow::kFatal) return r.fatal();
  return Status::Ok();
}

Result<std::string> Template::Render(const Context& context, const RenderOptions& options) const {
  std::string out;
  NUDGE_TRY(RenderTo(context, options, &out));
  return out;
}

const std::string& Template::source() const { return impl_->source; }
const std::vector<std::string>& Template::partial_names() const { return impl_->partial_names; }

Status PartialMap::Add(std::string_view name, std::string_view source,
                       const CompileOptions& options) {
  auto t = Template::Compile(source, options);
  if (!t) {
    return Status(t.error().code(), "partial '" + std::string(name) + "': " + t.error().message(),
                  t.error().where());
  }
  for (auto& [n, tmpl] : partials_) {
    if (n == name) {
      tmpl = *t;
      return Status::Ok();
    }
  }
  partials_.emplace_back(std::string(name), *t);
  return Status::Ok();
}

Result<std::shared_ptr<const Template>> PartialMap::Find(std::string_view name) const {
  for (const auto& [n, tmpl] : partials_) {
    if (n == name) return tmpl;
  }
  return Err(Status::NotFound("No such template '" + std::string(name) + "'"));
}

}  // namespace nudge::content
