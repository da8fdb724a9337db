#include "content/internal/render.h"

#include <algorithm>
#include <cmath>

#include "content/internal/nodes.h"
#include "content/internal/ruby.h"
#include "core/clock.h"

namespace nudge::content::internal {

void AppendEscaped(std::string& out, std::string_view s) {
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char* rep = nullptr;
    switch (s[i]) {
      case '&':
        rep = "&amp;";
        break;
      case '<':
        rep = "&lt;";
        break;
      case '>':
        rep = "&gt;";
        break;
      case '"':
        rep = "&quot;";
        break;
      case '\'':
        rep = "&#39;";
        break;
      default:
        continue;
    }
    out.append(s.data() + start, i - start);
    out += rep;
    start = i + 1;
  }
  out.append(s.data() + start, s.size() - start);
}

Renderer::Renderer(const RenderOptions& opts, const Context& ctx, std::string& o)
    : options(opts), context(*ctx.rep_), out(o), arena(opts.max_memory_bytes) {
  deadline_ = core::MonotonicMicros() + opts.max_render_micros;
}

Flow Renderer::Fatal(std::string message) {
  if (fatal_.ok()) fatal_ = Status(Code::kTooLarge, std::move(message));
  return Flow::kFatal;
}

bool Renderer::CountIteration() {
  ++iterations_;
  if (iterations_ > options.max_loop_iterations) {
    Fatal("the template ran more than " + std::to_string(options.max_loop_iterations) +
          " loop iterations");
    return false;
  }
  if ((iterations_ & 255) == 0 && core::MonotonicMicros() > deadline_) {
    Fatal("rendering took longer than " + std::to_string(options.max_render_micros / 1000) + " ms");
    return false;
  }
  return true;
}

bool Renderer::CheckMemory() {
  if (arena.exceeded()) {
    Fatal("rendering needed more than " + std::to_string(options.max_memory_bytes) +
          " bytes of memory");
    return false;
  }
  return true;
}

core::Millis Renderer::Now() {
  if (!now_) {
    if (options.clock != nullptr) {
      now_ = options.clock->NowMillis();
    } else {
      core::SystemClock clock;
      now_ = clock.NowMillis();
    }
  }
  return *now_;
}

Flow Renderer::RenderTemplate(const TemplateImpl& impl) {
  const TemplateImpl* saved = current;
  current = &impl;
  const Flow f = RenderBody(impl.body);
  current = saved;
  return f;
}

void Renderer::Output(const Value& v) {
  if (!options.html || v.safe()) {
    AppendOutput(out, v);
    return;
  }
  if (v.kind() == ValueKind::kString) {
    AppendEscaped(out, v.AsString());
    return;
  }
  if (v.kind() == ValueKind::kInt || v.kind() == ValueKind::kFloat || v.kind() == ValueKind::kNil ||
      v.kind() == ValueKind::kBool) {
    AppendOutput(out, v);
    return;
  }
  std::string tmp;
  AppendOutput(tmp, v);
  AppendEscaped(out, tmp);
}

Flow Renderer::RenderBody(const Body& body) {
  for (const auto& item : body.items) {
    if (item.node == nullptr) {
      out.append(item.text);
    } else {
      const Flow f = item.node->Render(*this);
      if (f != Flow::kOk) {
        if (f == Flow::kFatal) return f;
        if (options.strict_errors) {
          fatal_ =
              Status::Invalid(error_, current != nullptr ? Position(current->source, item.node->pos)
                                                         : std::string());
          return Flow::kFatal;
        }
        if (!item.node->blank) {
          const std::string msg = "Liquid error: " + error_;
          if (options.html) {
            AppendEscaped(out, msg);
          } else {
            out += msg;
          }
        }
        error_.clear();
      }
      if (!frame->interrupts.empty()) break;
    }
    if (out.size() > options.max_output_bytes) {
      return Fatal("the output is larger than " + std::to_string(options.max_output_bytes) +
                   " bytes");
    }
  }
  return Flow::kOk;
}

// ---------------------------------------------------------------------------------------------
// Variables

Value Renderer::FindVariable(std::string_view name) const {
  const Frame& f = *frame;
  for (size_t i = f.inner.size(); i-- > 0;) {
    if (f.inner[i].name == name) return f.inner[i].value;
  }
  for (const auto& v : f.outer) {
    if (v.name == name) return v.value;
  }
  for (const auto& v : f.counters) {
    if (v.name == name) return v.value;
  }
  if (f.sees_data) {
    if (const Value* v = context.vars.Find(name); v != nullptr && !v->is_nil()) return *v;
  }
  if (const Value* v = context.globals.Find(name); v != nullptr) return *v;
  return Value();
}

void Renderer::SetOuter(std::string_view name, Value v) {
  for (auto& var : frame->outer) {
    if (var.name == name) {
      var.value = v;
      return;
    }
  }
  frame->outer.push_back({name, v});
}

void Renderer::SetInner(std::string_view name, Value v) {
  auto& inner = frame->inner;
  const size_t start = frame->marks.empty() ? 0 : frame->marks.back();
  for (size_t i = start; i < inner.size(); ++i) {
    if (inner[i].name == name) {
      inner[i].value = v;
      return;
    }
  }
  inner.push_back({name, v});
}

Value Renderer::Pair(std::string_view key, const Value& value) {
  Value* items = arena.AllocArray<Value>(2);
  if (items == nullptr) return Value();
  items[0] = Value::Borrowed(key);
  items[1] = value;
  return ValueAccess::Array(items, 2);
}

namespace {

Value LoopField(LoopState* o, std::string_view key) {
  if (o->kind == LoopState::Kind::kFor) {
    if (key == "index") return Value::Int(o->index + 1);
    if (key == "index0") return Value::Int(o->index);
    if (key == "rindex") return Value::Int(o->length - o->index);
    if (key == "rindex0") return Value::Int(o->length - o->index - 1);
    if (key == "first") return Value::Bool(o->index == 0);
    if (key == "last") return Value::Bool(o->index == o->length - 1);
    if (key == "length") return Value::Int(o->length);
    if (key == "name") return Value::Borrowed(o->name);
    if (key == "parentloop") return o->parent ? ValueAccess::Object(o->parent) : Value();
    return Value();
  }
  if (key == "index") return Value::Int(o->index + 1);
  if (key == "index0") return Value::Int(o->index);
  if (key == "rindex") return Value::Int(o->length - o->index);
  if (key == "rindex0") return Value::Int(o->length - o->index - 1);
  if (key == "first") return Value::Bool(o->index == 0);
  if (key == "last") return Value::Bool(o->index == o->length - 1);
  if (key == "length") return Value::Int(o->length);
  if (key == "col") return Value::Int(o->col);
  if (key == "col0") return Value::Int(o->col - 1);
  if (key == "row") return Value::Int(o->row);
  if (key == "col_first") return Value::Bool(o->col == 1);
  if (key == "col_last") return Value::Bool(o->col == o->cols);
  return Value();
}

}  // namespace

Value Renderer::LookupKey(const Value& object, const Value& key, bool command) {
  switch (object.kind()) {
    case ValueKind::kHash: {
      if (key.is_string()) {
        if (const HashEntry* e = ValueAccess::hash(object)->Find(key.AsString())) {
          return e->value;
        }
      } else if (key.kind() == ValueKind::kInt) {
        return Value();  // Hash#fetch-able with an Integer: hash[1] is nil
      }
      if (command) {
        const std::string_view k = key.AsString();
        if (k == "size") return Value::Int(object.size());
        if (k == "first") {
          if (object.size() == 0) return Value();
          const HashEntry& e = ValueAccess::hash(object)->entries[0];
          return Pair(e.key_view(), e.value);
        }
      }
      return Value();
    }
    case ValueKind::kArray: {
      if (key.kind() == ValueKind::kInt) {
        int64_t i = key.AsInt();
        const int64_t n = object.size();
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value();
        return ValueAccess::items(object)[i];
      }
      if (command) {
        const std::string_view k = key.AsString();
        if (k == "size") return Value::Int(object.size());
        if (object.size() == 0) return Value();
        if (k == "first") return ValueAccess::items(object)[0];
        if (k == "last") return ValueAccess::items(object)[object.size() - 1];
      }
      return Value();
    }
    case ValueKind::kString:
      if (command && key.AsString() == "size") {
        return Value::Int(static_cast<int64_t>(Utf8Length(object.AsString())));
      }
      return Value();
    case ValueKind::kInt:
      if (command && key.AsString() == "size") return Value::Int(8);
      return Value();
    case ValueKind::kRange: {
      if (!command) return Value();
      const RangeRep* r = ValueAccess::range(object);
      const std::string_view k = key.AsString();
      if (k == "size") return Value::Int(r->size());
      if (k == "first") return Value::Int(r->lo);
      if (k == "last") return Value::Int(r->hi);
      return Value();
    }
    case ValueKind::kObject:
      if (!key.is_string()) return Value();
      return LoopField(ValueAccess::object(object), key.AsString());
    default:
      return Value();
  }
}

bool Renderer::Eval(const Expr& e, Value* out) {
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      *out = e.literal;
      return true;
    case Expr::Kind::kLookup: {
      Value object;
      if (e.name_expr) {
        Value name;
        if (!Eval(*e.name_expr, &name)) return false;
        object = name.is_string() ? FindVariable(name.AsString()) : Value();
      } else {
        object = FindVariable(e.name);
      }
      for (const auto& part : e.parts) {
        if (object.is_nil()) break;
        Value key = part.key;
        if (part.dyn) {
          if (!Eval(*part.dyn, &key)) return false;
        }
        object = LookupKey(object, key, part.command);
      }
      *out = object;
      return CheckMemory();
    }
    case Expr::Kind::kRange: {
      Value lo, hi;
      if (!Eval(*e.lo, &lo) || !Eval(*e.hi, &hi)) return false;
      auto to_int = [&](const Value& v, int64_t* i) {
        switch (v.kind()) {
          case ValueKind::kInt:
            *i = v.AsInt();
            return true;
          case ValueKind::kNil:
            *i = 0;
            return true;
          case ValueKind::kString:
            *i = StringToI(v.AsString());
            return true;
          default: {
            auto r = ToInteger(v);
            if (!r) return FailB("invalid integer");
            *i = *r;
            return true;
          }
        }
      };
      int64_t a = 0, b = 0;
      if (!to_int(lo, &a) || !to_int(hi, &b)) return false;
      *out = arena.Range(a, b);
      return CheckMemory();
    }
    case Expr::Kind::kEmpty:
    case Expr::Kind::kBlank:
      // A method literal outside a comparison: Ruby evaluates it to the (truthy) object.
      *out = Value::Bool(true);
      return true;
  }
  return true;
}

bool Renderer::ApplyFilter(const FilterApp& app, Value* v) {
  // Arguments (and the keyword hash, last, as Ruby passes it) on the stack when few.
  Value small[8];
  std::vector<Value> large;
  Value* args = small;
  if (app.args.size() + 1 > std::size(small)) {
    large.resize(app.args.size() + 1);
    args = large.data();
  }
  size_t n = 0;
  for (const auto& a : app.args) {
    if (!Eval(a, &args[n])) return false;
    ++n;
  }
  Value kwargs;
  if (!app.kwargs.empty()) {
    std::vector<HashEntry> entries;
    for (const auto& [name, expr] : app.kwargs) {
      Value x;
      if (!Eval(expr, &x)) return false;
      entries.push_back({name.data(), static_cast<uint32_t>(name.size()), x});
    }
    kwargs = arena.Hash(entries);
  }
  const FilterRegistry::Entry* f = app.filter;
  Value result;
  if (f->builtin != nullptr) {
    size_t total = n;
    if (!kwargs.is_nil()) args[total++] = kwargs;
    if (!f->builtin(*this, *v, args, total, &result)) return false;
  } else {
    FilterCall call(*this, *v, args, n, kwargs);
    Result<Value> r = f->custom(call);
    if (!r) return FailB(r.error().message());
    result = *r;
  }
  if (!CheckMemory()) return false;
  *v = result;
  return true;
}

bool Renderer::EvalFiltered(const Filtered& f, Value* out) {
  Value v;
  if (f.has_expr && !Eval(f.expr, &v)) return false;
  for (const auto& app : f.filters) {
    if (!ApplyFilter(app, &v)) return false;
  }
  *out = v;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Conditions

bool Renderer::Compare(CmpOp op, const Value& l, const Value& r, bool l_empty, bool l_blank,
                       bool r_empty, bool r_blank, Value* out) {
  const bool l_lit = l_empty || l_blank;
  const bool r_lit = r_empty || r_blank;
  switch (op) {
    case CmpOp::kEq:
    case CmpOp::kNe: {
      // Condition#equal_variables: `x == empty` asks x.empty?; nothing answers blank? without
      // Rails, so `x == blank` is nil (false).
      std::optional<bool> eq;
      if (l_lit || r_lit) {
        const Value& other = l_lit ? r : l;
        const bool other_lit = l_lit ? r_lit : l_lit;
        const bool is_empty = l_lit ? l_empty : r_empty;
        if (is_empty && !other_lit &&
            (other.kind() == ValueKind::kString || other.kind() == ValueKind::kArray ||
             other.kind() == ValueKind::kHash)) {
          eq = other.kind() == ValueKind::kString ? other.AsString().empty() : other.size() == 0;
        }
      } else {
        eq = Equal(l, r);
      }
      if (op == CmpOp::kEq) {
        *out = eq ? Value::Bool(*eq) : Value();
      } else {
        *out = Value::Bool(!(eq && *eq));
      }
      return true;
    }
    case CmpOp::kContains: {
      if (l_lit || !l.truthy() || !(r_lit || r.truthy())) {
        *out = Value::Bool(false);
        return true;
      }
      switch (l.kind()) {
        case ValueKind::kString: {
          std::string needle;
          if (!r_lit) AppendToS(needle, r);
          *out = Value::Bool(l.AsString().find(needle) != std::string_view::npos);
          return true;
        }
        case ValueKind::kArray: {
          bool found = false;
          if (!r_lit) {
            for (uint32_t i = 0; i < l.size() && !found; ++i) {
              found = Equal(ValueAccess::items(l)[i], r);
            }
          }
          *out = Value::Bool(found);
          return true;
        }
        case ValueKind::kHash:
          *out = Value::Bool(!r_lit && r.is_string() &&
                             ValueAccess::hash(l)->Find(r.AsString()) != nullptr);
          return true;
        case ValueKind::kRange: {
          const RangeRep* range = ValueAccess::range(l);
          bool in = false;
          if (r.kind() == ValueKind::kInt) {
            in = r.AsInt() >= range->lo && r.AsInt() <= range->hi;
          } else if (r.kind() == ValueKind::kFloat) {
            in = r.AsFloat() >= static_cast<double>(range->lo) &&
                 r.AsFloat() <= static_cast<double>(range->hi);
          }
          *out = Value::Bool(in);
          return true;
        }
        default:
          *out = Value::Bool(false);
          return true;
      }
    }
    default: {
      auto comparable = [](const Value& v) {
        return v.kind() == ValueKind::kInt || v.kind() == ValueKind::kFloat ||
               v.kind() == ValueKind::kString;
      };
      if (l_lit || r_lit || !comparable(l) || !comparable(r)) {
        *out = Value();
        return true;
      }
      const bool l_num = l.kind() != ValueKind::kString;
      const bool r_num = r.kind() != ValueKind::kString;
      if (l_num != r_num) {
        return FailB("comparison of " + std::string(ClassName(l)) + " with " + CmpErrName(r) +
                     " failed");
      }
      auto c = internal::Compare(l, r);
      if (!c) {
        *out = Value::Bool(false);  // NaN
        return true;
      }
      bool res = false;
      switch (op) {
        case CmpOp::kLt:
          res = *c < 0;
          break;
        case CmpOp::kGt:
          res = *c > 0;
          break;
        case CmpOp::kLe:
          res = *c <= 0;
          break;
        default:
          res = *c >= 0;
      }
      *out = Value::Bool(res);
      return true;
    }
  }
}

bool Renderer::EvalCondition(const Condition& cond, Value* out) {
  const Condition* c = &cond;
  for (;;) {
    Value result;
    if (c->op == CmpOp::kNone) {
      if (!Eval(c->left, &result)) return false;
    } else {
      Value l, r;
      if (!Eval(c->left, &l) || !Eval(c->right, &r)) return false;
      if (!Compare(c->op, l, r, c->left.kind == Expr::Kind::kEmpty,
                   c->left.kind == Expr::Kind::kBlank, c->right.kind == Expr::Kind::kEmpty,
                   c->right.kind == Expr::Kind::kBlank, &result)) {
        return false;
      }
    }
    if (c->rel == Condition::Rel::kOr && result.truthy()) {
      *out = result;
      return true;
    }
    if (c->rel == Condition::Rel::kAnd && !result.truthy()) {
      *out = result;
      return true;
    }
    if (c->rel == Condition::Rel::kNone || !c->child) {
      *out = result;
      return true;
    }
    c = c->child.get();
  }
}

// ---------------------------------------------------------------------------------------------
// Collections

bool Renderer::ToList(const Value& v, std::vector<Value>& out) {
  switch (v.kind()) {
    case ValueKind::kNil:
      return true;
    case ValueKind::kArray: {
      const Value* items = ValueAccess::items(v);
      for (uint32_t i = 0; i < v.size(); ++i) {
        if (items[i].kind() == ValueKind::kArray) {
          if (!ToList(items[i], out)) return false;
        } else {
          out.push_back(items[i]);
        }
      }
      return true;
    }
    case ValueKind::kRange: {
      const RangeRep* r = ValueAccess::range(v);
      const int64_t n = r->size();
      if (!arena.Fits(static_cast<size_t>(n) * sizeof(Value))) return CheckMemory();
      for (int64_t i = r->lo; n > 0 && i <= r->hi; ++i) {
        out.push_back(Value::Int(i));
        if (i == INT64_MAX) break;
      }
      return true;
    }
    default:
      out.push_back(v);
      return true;
  }
}

bool Renderer::Slice(const Value& collection, int64_t from, std::optional<int64_t> to,
                     std::vector<Value>& out) {
  // Utils.slice_collection_using_each
  auto in_window = [&](int64_t index) { return from <= index; };
  switch (collection.kind()) {
    case ValueKind::kString:
      if (!collection.AsString().empty()) out.push_back(collection);
      return true;
    case ValueKind::kArray: {
      const int64_t n = collection.size();
      const int64_t end = to ? std::min(n, std::max<int64_t>(*to, 0)) : n;
      for (int64_t i = std::max<int64_t>(from, 0); i < end; ++i) {
        out.push_back(ValueAccess::items(collection)[i]);
      }
      return true;
    }
    case ValueKind::kHash: {
      const HashRep* h = ValueAccess::hash(collection);
      for (uint32_t i = 0; i < h->size; ++i) {
        if (to && *to <= static_cast<int64_t>(i)) break;
        if (in_window(i)) out.push_back(Pair(h->entries[i].key_view(), h->entries[i].value));
      }
      return CheckMemory();
    }
    case ValueKind::kRange: {
      const RangeRep* r = ValueAccess::range(collection);
      const int64_t n = r->size();
      int64_t end = to ? std::min(n, std::max<int64_t>(*to, 0)) : n;
      const int64_t start = std::max<int64_t>(from, 0);
      // Loops stop at the iteration limit: never expand more than that.
      if (end - start > static_cast<int64_t>(options.max_loop_iterations) + 1) {
        end = start + static_cast<int64_t>(options.max_loop_iterations) + 1;
      }
      if (end > start && !arena.Fits(static_cast<size_t>(end - start) * sizeof(Value))) {
        return CheckMemory();
      }
      for (int64_t i = start; i < end; ++i) out.push_back(Value::Int(r->lo + i));
      return true;
    }
    default:
      return true;
  }
}

bool Renderer::Property(const Value& item, const Value& property, Value* out, bool* responds) {
  *responds = true;
  switch (item.kind()) {
    case ValueKind::kHash:
      if (property.is_string()) {
        const HashEntry* e = ValueAccess::hash(item)->Find(property.AsString());
        *out = e != nullptr ? e->value : Value();
      } else {
        *out = Value();
      }
      return true;
    case ValueKind::kString: {
      const std::string_view s = item.AsString();
      if (property.is_string()) {
        *out = s.find(property.AsString()) != std::string_view::npos
                   ? Value::Borrowed(property.AsString())
                   : Value();
        return true;
      }
      if (property.kind() == ValueKind::kInt) {
        int64_t i = property.AsInt();
        const int64_t n = static_cast<int64_t>(Utf8Length(s));
        if (i < 0) i += n;
        if (i < 0 || i >= n) {
          *out = Value();
        } else {
          const size_t a = Utf8Offset(s, static_cast<size_t>(i));
          const size_t b = Utf8Offset(s, static_cast<size_t>(i) + 1);
          *out = Value::Borrowed(s.substr(a, b - a));
        }
        return true;
      }
      break;
    }
    case ValueKind::kArray:
      if (property.kind() == ValueKind::kInt) {
        *out = LookupKey(item, property, false);
        return true;
      }
      break;
    case ValueKind::kInt:
      if (property.kind() == ValueKind::kInt) {
        const int64_t bit = property.AsInt();
        *out = Value::Int(
            bit < 0 ? 0 : (bit >= 63 ? (item.AsInt() < 0 ? 1 : 0) : ((item.AsInt() >> bit) & 1)));
        return true;
      }
      break;
    case ValueKind::kObject:
      *out = property.is_string() ? LoopField(ValueAccess::object(item), property.AsString())
                                  : Value();
      return true;
    default:
      *responds = false;
      return false;
  }
  std::string p;
  AppendToS(p, property);
  return FailB("cannot select the property '" + p + "'");
}

// ---------------------------------------------------------------------------------------------
// Nodes

Flow OutputNode::Render(Renderer& r) const {
  Value v;
  if (!r.EvalFiltered(value, &v)) return r.fatal().ok() ? Flow::kError : Flow::kFatal;
  r.Output(v);
  return Flow::kOk;
}

Flow AssignNode::Render(Renderer& r) const {
  Value v;
  if (!r.EvalFiltered(from, &v)) return r.fatal().ok() ? Flow::kError : Flow::kFatal;
  r.SetOuter(to, v);
  return Flow::kOk;
}

Flow CaptureNode::Render(Renderer& r) const {
  const size_t start = r.out.size();
  const Flow f = r.RenderBody(body);
  if (f == Flow::kFatal) return f;
  const Value v = r.arena.String(std::string_view(r.out).substr(start), r.html());
  r.out.resize(start);
  if (!r.CheckMemory()) return Flow::kFatal;
  r.SetOuter(to, v);
  return Flow::kOk;
}

Flow IfNode::Render(Renderer& r) const {
  for (size_t i = 0; i < branches.size(); ++i) {
    const Branch& b = branches[i];
    bool take = true;
    if (b.cond) {
      Value v;
      if (!r.EvalCondition(*b.cond, &v)) return r.fatal().ok() ? Flow::kError : Flow::kFatal;
      take = (unless && i == 0) ? !v.truthy() : v.truthy();
    }
    if (take) return r.RenderBody(b.body);
  }
  return Flow::kOk;
}

Flow CaseNode::Render(Renderer& r) const {
  Value l;
  bool run_else = true;
  bool have_left = false;
  for (const When& w : whens) {
    if (w.is_else) {
      if (run_else) {
        const Flow f = r.RenderBody(*w.body);
        if (f != Flow::kOk) return f;
      }
      continue;
    }
    if (!have_left) {
      if (!r.Eval(left, &l)) return r.fatal().ok() ? Flow::kError : Flow::kFatal;
      have_left = true;
    }
    // Condition.new(@left, '==', value)
    Value right;
    if (!r.Eval(w.value, &right)) return r.fatal().ok() ? Flow::kError : Flow::kFatal;
    const bool r_empty = w.value.kind == Expr::Kind::kEmpty;
    const bool r_blank = w.value.kind == Expr::Kind::kBlank;
    bool eq = false;
    if (r_empty) {
      eq = (l.is_string() && l.AsString().empty()) ||
           ((l.kind() == ValueKind::kArray || l.kind() == ValueKind::kHash) && l.size() == 0);
    } else if (!r_blank) {
      eq = Equal(l, right);
    }
    if (eq) {
      run_else = false;
      const Flow f = r.RenderBody(*w.body);
      if (f != Flow::kOk) return f;
    }
  }
  return Flow::kOk;
}

namespace {

LoopState* NewLoop(Renderer& r) {
  void* p = r.arena.Alloc(sizeof(LoopState));
  if (p == nullptr) return nullptr;
  return new (p) LoopState();
}

Flow ErrorOrFatal(Renderer& r) { return r.fatal().ok() ? Flow::kError : Flow::kFatal; }

}  // namespace

Flow ForNode::Render(Renderer& r) const {
  Frame& frame = *r.frame;
  int64_t from = 0;
  if (offset_continue) {
    for (const auto& [k, v] : frame.for_offsets) {
      if (k == name) from = v;
    }
  } else if (offset) {
    Value v;
    if (!r.Eval(*offset, &v)) return ErrorOrFatal(r);
    if (!v.is_nil()) {
      auto i = ToInteger(v);
      if (!i) return r.Fail("invalid integer");
      from = *i;
    }
  }
  Value collection;
  if (!r.Eval(this->collection, &collection)) return ErrorOrFatal(r);
  std::optional<int64_t> to;
  if (limit) {
    Value v;
    if (!r.Eval(*limit, &v)) return ErrorOrFatal(r);
    if (!v.is_nil()) {
      auto i = ToInteger(v);
      if (!i) return r.Fail("invalid integer");
      to = *i + from;
    }
  }
  // The items to visit: a window of an array in place, anything else collected.
  std::vector<Value> storage;
  const Value* items = nullptr;
  size_t count = 0;
  if (collection.kind() == ValueKind::kArray) {
    const int64_t n = collection.size();
    const int64_t end = to ? std::min(n, std::max<int64_t>(*to, 0)) : n;
    const int64_t start = std::max<int64_t>(from, 0);
    if (end > start) {
      items = ValueAccess::items(collection) + start;
      count = static_cast<size_t>(end - start);
    }
  } else {
    if (!r.Slice(collection, from, to, storage)) return ErrorOrFatal(r);
    items = storage.data();
    count = storage.size();
  }
  {
    bool found = false;
    for (auto& [k, v] : frame.for_offsets) {
      if (k == name) {
        v = from + static_cast<int64_t>(count);
        found = true;
      }
    }
    if (!found) frame.for_offsets.emplace_back(name, from + static_cast<int64_t>(count));
  }
  if (count == 0) {
    return else_body ? r.RenderBody(*else_body) : Flow::kOk;
  }
  LoopState* loop = NewLoop(r);
  if (loop == nullptr) return r.CheckMemory() ? Flow::kOk : Flow::kFatal;
  loop->name = name;
  loop->length = static_cast<int64_t>(count);
  loop->parent = frame.for_stack.empty() ? nullptr : frame.for_stack.back();
  r.PushScope();
  frame.for_stack.push_back(loop);
  r.SetInner("forloop", ValueAccess::Object(loop));
  Flow result = Flow::kOk;
  for (size_t i = 0; i < count; ++i) {
    if (!r.CountIteration()) {
      result = Flow::kFatal;
      break;
    }
    r.SetInner(var, items[reversed ? count - 1 - i : i]);
    const Flow f = r.RenderBody(body);
    if (f == Flow::kFatal) {
      result = f;
      break;
    }
    ++loop->index;
    if (!frame.interrupts.empty()) {
      const bool is_break = frame.interrupts.back();
      frame.interrupts.pop_back();
      if (is_break) break;
    }
  }
  frame.for_stack.pop_back();
  r.PopScope();
  return result;
}

Flow TablerowNode::Render(Renderer& r) const {
  Value collection;
  if (!r.Eval(this->collection, &collection)) return ErrorOrFatal(r);
  if (!collection.truthy()) return Flow::kOk;
  auto to_i = [&](const std::unique_ptr<Expr>& e, int64_t* out) -> bool {
    *out = 0;
    if (!e) return true;
    Value v;
    if (!r.Eval(*e, &v)) return false;
    switch (v.kind()) {
      case ValueKind::kNil:
        return true;
      case ValueKind::kInt:
        *out = v.AsInt();
        return true;
      case ValueKind::kFloat:
        if (!std::isfinite(v.AsFloat())) return r.FailB(ToS(v));
        *out = static_cast<int64_t>(v.AsFloat());
        return true;
      case ValueKind::kString:
        *out = StringToI(v.AsString());
        return true;
      default:
        return r.FailB("internal");
    }
  };
  int64_t from = 0, lim = 0, cols_n = 0;
  if (!to_i(offset, &from)) return ErrorOrFatal(r);
  std::optional<int64_t> to;
  if (limit) {
    if (!to_i(limit, &lim)) return ErrorOrFatal(r);
    to = from + lim;
  }
  std::vector<Value> items;
  if (!r.Slice(collection, from, to, items)) return ErrorOrFatal(r);
  if (!to_i(cols, &cols_n)) return ErrorOrFatal(r);
  LoopState* loop = NewLoop(r);
  if (loop == nullptr) return r.CheckMemory() ? Flow::kOk : Flow::kFatal;
  loop->kind = LoopState::Kind::kTablerow;
  loop->length = static_cast<int64_t>(items.size());
  loop->cols = cols_n;
  r.out += "<tr class=\"row1\">\n";
  r.PushScope();
  r.SetInner("tablerowloop", ValueAccess::Object(loop));
  Flow result = Flow::kOk;
  for (const Value& item : items) {
    if (!r.CountIteration()) {
      result = Flow::kFatal;
      break;
    }
    r.SetInner(var, item);
    r.out += "<td class=\"col";
    AppendInt(r.out, loop->col);
    r.out += "\">";
    const Flow f = r.RenderBody(body);
    if (f == Flow::kFatal) {
      result = f;
      break;
    }
    r.out += "</td>";
    if (loop->col == loop->cols && loop->index != loop->length - 1) {
      r.out += "</tr>\n<tr class=\"row";
      AppendInt(r.out, loop->row + 1);
      r.out += "\">";
    }
    ++loop->index;
    if (loop->col == loop->cols) {
      loop->col = 1;
      ++loop->row;
    } else {
      ++loop->col;
    }
  }
  r.PopScope();
  if (result == Flow::kOk) r.out += "</tr>\n";
  return result;
}

Flow CycleNode::Render(Renderer& r) const {
  std::string k;
  if (group) {
    Value g;
    if (!r.Eval(*group, &g)) return ErrorOrFatal(r);
    // Ruby keys the register hash by the group's value.
    switch (g.kind()) {
      case ValueKind::kString:
        k = "s";
        k += g.AsString();
        break;
      case ValueKind::kInt:
      case ValueKind::kFloat:
        k = "n";
        AppendInspect(k, g);
        break;
      default:
        k = "v";
        AppendInspect(k, g);
    }
  } else {
    k = key;
  }
  auto& cycles = r.frame->cycles;
  int64_t* iteration = nullptr;
  for (auto& [name, it] : cycles) {
    if (name == k) iteration = &it;
  }
  if (iteration == nullptr) {
    cycles.emplace_back(k, 0);
    iteration = &cycles.back().second;
  }
  const int64_t idx = *iteration < static_cast<int64_t>(values.size()) ? *iteration : 0;
  Value v;
  if (!r.Eval(values[static_cast<size_t>(idx)], &v)) return ErrorOrFatal(r);
  r.Output(v);
  int64_t next = idx + 1;
  if (next >= static_cast<int64_t>(values.size())) next = 0;
  // Re-find: evaluating may not add cycles, but keep it simple and safe.
  for (auto& [name, it] : cycles) {
    if (name == k) it = next;
  }
  return Flow::kOk;
}

Flow CounterNode::Render(Renderer& r) const {
  Frame& frame = *r.frame;
  Var* slot = nullptr;
  for (auto& v : frame.counters) {
    if (v.name == name) slot = &v;
  }
  Value current;
  if (slot != nullptr) {
    current = slot->value;
  } else if (frame.sees_data) {
    if (const Value* v = r.context.vars.Find(name)) current = *v;
  }
  if (!current.truthy()) current = Value::Int(0);
  Value next;
  switch (current.kind()) {
    case ValueKind::kInt: {
      int64_t n = 0;
      if (__builtin_add_overflow(current.AsInt(), decrement ? -1 : 1, &n)) {
        return r.Fail("integer overflow");
      }
      next = Value::Int(n);
      break;
    }
    case ValueKind::kFloat:
      next = Value::Float(current.AsFloat() + (decrement ? -1 : 1));
      break;
    default:
      return r.Fail("internal");
  }
  if (slot != nullptr) {
    slot->value = next;
  } else {
    frame.counters.push_back({name, next});
  }
  AppendOutput(r.out, decrement ? next : current);
  return Flow::kOk;
}

Flow RawNode::Render(Renderer& r) const {
  r.out += text;
  return Flow::kOk;
}

Flow InterruptNode::Render(Renderer& r) const {
  r.frame->interrupts.push_back(is_break);
  return Flow::kOk;
}

Flow IfchangedNode::Render(Renderer& r) const {
  const size_t start = r.out.size();
  const Flow f = r.RenderBody(body);
  if (f == Flow::kFatal) return f;
  const std::string_view produced = std::string_view(r.out).substr(start);
  Frame& frame = *r.frame;
  if (!frame.has_ifchanged || produced != frame.ifchanged) {
    frame.ifchanged.assign(produced);
    frame.has_ifchanged = true;
  } else {
    r.out.resize(start);
  }
  return f;
}

Flow PartialNode::Render(Renderer& r) const {
  if (!isolated && r.frame->include_disabled) {
    return r.Fail("include usage is not allowed in this context");
  }
  Value name_value;
  if (!r.Eval(template_name, &name_value)) return ErrorOrFatal(r);
  if (!name_value.truthy()) {
    return r.Fail("Argument error in tag 'include' - Illegal template name");
  }
  std::string_view name;
  if (name_value.is_string()) {
    name = name_value.AsString();
  } else {
    const Value copy = r.arena.String(ToS(name_value));
    if (!r.CheckMemory()) return Flow::kFatal;
    name = copy.AsString();
  }
  if (r.depth >= r.options.max_partial_depth) {
    return r.Fatal("partials are nested more than " + std::to_string(r.options.max_partial_depth) +
                   " deep");
  }
  if (r.options.partials == nullptr) {
    return r.Fail("No such template '" + std::string(name) + "'");
  }
  auto found = r.options.partials->Find(name);
  if (!found) {
    if (found.error().code() == Code::kNotFound) {
      return r.Fail("No such template '" + std::string(name) + "'");
    }
    return r.Fail(found.error().message());
  }
  const TemplateImpl& partial = (*found)->impl();
  r.partials.push_back(*found);
  std::string_view var_name = alias;
  if (var_name.empty()) {
    const size_t slash = name.rfind('/');
    var_name = slash == std::string_view::npos ? name : name.substr(slash + 1);
  }

  if (!isolated) {
    // Include: the partial shares the caller's scopes.
    Value variable;
    if (this->variable) {
      if (!r.Eval(*this->variable, &variable)) return ErrorOrFatal(r);
    } else {
      variable = r.FindVariable(name);
    }
    ++r.depth;
    r.PushScope();
    Flow result = Flow::kOk;
    for (const auto& [key, expr] : attributes) {
      Value v;
      if (!r.Eval(expr, &v)) {
        result = ErrorOrFatal(r);
        break;
      }
      r.SetInner(key, v);
    }
    if (result == Flow::kOk) {
      if (variable.kind() == ValueKind::kArray) {
        for (uint32_t i = 0; i < variable.size(); ++i) {
          if (!r.CountIteration()) {
            result = Flow::kFatal;
            break;
          }
          r.SetInner(var_name, ValueAccess::items(variable)[i]);
          result = r.RenderTemplate(partial);
          if (result == Flow::kFatal) break;
        }
      } else {
        r.SetInner(var_name, variable);
        result = r.RenderTemplate(partial);
      }
    }
    r.PopScope();
    --r.depth;
    return result;
  }

  // Render: a new, isolated context per call.
  Value variable;
  if (this->variable) {
    if (!r.Eval(*this->variable, &variable)) return ErrorOrFatal(r);
  }
  std::vector<Value> items;
  LoopState* loop = nullptr;
  const bool iterate =
      is_for && (variable.kind() == ValueKind::kArray || variable.kind() == ValueKind::kHash ||
                 variable.kind() == ValueKind::kRange);
  if (iterate) {
    if (!r.Slice(variable, 0, std::nullopt, items)) return ErrorOrFatal(r);
    loop = NewLoop(r);
    if (loop == nullptr) return r.CheckMemory() ? Flow::kOk : Flow::kFatal;
    loop->name = name;
    loop->length = static_cast<int64_t>(items.size());
  } else {
    items.push_back(variable);
  }
  Frame* outer = r.frame;
  Flow result = Flow::kOk;
  ++r.depth;
  for (const Value& item : items) {
    if (iterate && !r.CountIteration()) {
      result = Flow::kFatal;
      break;
    }
    Frame inner;
    inner.sees_data = false;
    inner.include_disabled = true;
    if (loop != nullptr) inner.outer.push_back({"forloop", ValueAccess::Object(loop)});
    bool ok = true;
    for (const auto& [key, expr] : attributes) {
      Value v;
      if (!r.Eval(expr, &v)) {
        ok = false;
        break;
      }
      bool set = false;
      for (auto& var : inner.outer) {
        if (var.name == key) {
          var.value = v;
          set = true;
        }
      }
      if (!set) inner.outer.push_back({key, v});
    }
    if (!ok) {
      result = ErrorOrFatal(r);
      break;
    }
    if (!item.is_nil()) {
      bool set = false;
      for (auto& var : inner.outer) {
        if (var.name == var_name) {
          var.value = item;
          set = true;
        }
      }
      if (!set) inner.outer.push_back({var_name, item});
    }
    r.frame = &inner;
    result = r.RenderTemplate(partial);
    r.frame = outer;
    if (result == Flow::kFatal) break;
    if (loop != nullptr) ++loop->index;
  }
  --r.depth;
  return result;
}

}  // namespace nudge::content::internal
