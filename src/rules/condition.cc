// The condition language: lexer, recursive-descent parser that type-checks as it builds, and
// the evaluation nodes. The grammar and the meaning are in docs/conditions.md.
#include "rules/condition.h"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include "core/time.h"

namespace nudge::rules {
namespace {

using core::Millis;

constexpr Millis kSecond = 1000;
constexpr Millis kMaxWindow = 3650LL * 86400 * kSecond;

struct Pos {
  int line = 1;
  int column = 1;
  std::string ToString() const { return std::to_string(line) + ":" + std::to_string(column); }
};

// ---------------------------------------------------------------------------------------------
// Lexer

enum class Tok {
  kEnd,
  kIdent,
  kString,
  kNumber,
  kDuration,
  kTime,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kComma,
  kDot,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kPlus,
  kMinus,
};

struct Token {
  Tok kind = Tok::kEnd;
  Pos pos;
  std::string text;  // identifier, decoded string, or the literal's source
  double number = 0;
  Millis ms = 0;  // duration or time
};

std::string Describe(const Token& t) {
  switch (t.kind) {
    case Tok::kEnd:
      return "the end of the condition";
    case Tok::kIdent:
      return "'" + t.text + "'";
    case Tok::kString:
      return "the string \"" + t.text + "\"";
    case Tok::kNumber:
    case Tok::kDuration:
    case Tok::kTime:
      return "'" + t.text + "'";
    default:
      return "'" + t.text + "'";
  }
}

Status ErrorAt(Pos pos, std::string message, std::string_view hint = {}) {
  if (!hint.empty()) {
    message += " (hint: ";
    message += hint;
    message += ")";
  }
  return Status::Invalid(std::move(message), pos.ToString());
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  Result<std::vector<Token>> Run() {
    std::vector<Token> out;
    for (;;) {
      SkipSpace();
      Token t;
      t.pos = pos_;
      if (i_ >= src_.size()) {
        out.push_back(t);
        return out;
      }
      const char c = src_[i_];
      if (IsIdentStart(c)) {
        const size_t start = i_;
        while (i_ < src_.size() && IsIdentChar(src_[i_])) Advance();
        t.kind = Tok::kIdent;
        t.text.assign(src_.substr(start, i_ - start));
      } else if (c >= '0' && c <= '9') {
        NUDGE_TRY(Number(t));
      } else if (c == '"') {
        NUDGE_TRY(String(t));
      } else {
        NUDGE_TRY(Punct(t));
      }
      out.push_back(std::move(t));
    }
  }

 private:
  static bool IsIdentStart(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  }
  static bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }
  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }

  char Peek(size_t ahead = 0) const { return i_ + ahead < src_.size() ? src_[i_ + ahead] : '\0'; }
  void Advance() {
    if (src_[i_] == '\n') {
      ++pos_.line;
      pos_.column = 1;
    } else if ((static_cast<unsigned char>(src_[i_]) & 0xC0) != 0x80) {
      ++pos_.column;  // count characters, not UTF-8 continuation bytes
    }
    ++i_;
  }

  void SkipSpace() {
    while (i_ < src_.size()) {
      const char c = src_[i_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        Advance();
      } else if (c == '#') {
        while (i_ < src_.size() && src_[i_] != '\n') Advance();
      } else {
        break;
      }
    }
  }

  bool LooksLikeDate() const {
    for (size_t k = 0; k < 10; ++k) {
      const char c = Peek(k);
      if (k == 4 || k == 7) {
        if (c != '-') return false;
      } else if (!IsDigit(c)) {
        return false;
      }
    }
    return !IsDigit(Peek(10));
  }

  Status Number(Token& t) {
    const size_t start = i_;
    if (LooksLikeDate()) {
      for (int k = 0; k < 10; ++k) Advance();
      if ((Peek() == 'T' || Peek() == 't') && IsDigit(Peek(1))) {
        Advance();
        while (IsDigit(Peek()) || Peek() == ':' || Peek() == '.') Advance();
        if (Peek() == 'Z' || Peek() == 'z') {
          Advance();
        } else if ((Peek() == '+' || Peek() == '-') && IsDigit(Peek(1))) {
          Advance();
          while (IsDigit(Peek()) || Peek() == ':') Advance();
        }
      }
      t.text.assign(src_.substr(start, i_ - start));
      auto ms = core::ParseIso8601(t.text);
      if (!ms)
        return ErrorAt(t.pos, "'" + t.text + "' is not a valid timestamp: " + ms.error().message());
      t.kind = Tok::kTime;
      t.ms = *ms;
      if (IsIdentChar(Peek())) return ErrorAt(pos_, "unexpected character after a timestamp");
      return Status::Ok();
    }
    while (IsDigit(Peek())) Advance();
    bool integer = true;
    if (Peek() == '.' && IsDigit(Peek(1))) {
      integer = false;
      Advance();
      while (IsDigit(Peek())) Advance();
    }
    if ((Peek() == 'e' || Peek() == 'E') &&
        (IsDigit(Peek(1)) || ((Peek(1) == '+' || Peek(1) == '-') && IsDigit(Peek(2))))) {
      integer = false;
      Advance();
      if (Peek() == '+' || Peek() == '-') Advance();
      while (IsDigit(Peek())) Advance();
    }
    t.text.assign(src_.substr(start, i_ - start));
    const char unit = Peek();
    if (IsIdentStart(unit)) {
      const bool is_unit =
          (unit == 's' || unit == 'm' || unit == 'h' || unit == 'd' || unit == 'w') &&
          !IsIdentChar(Peek(1));
      if (!is_unit || !integer)
        return ErrorAt(pos_, "unexpected '" + std::string(1, unit) + "' after the number " + t.text,
                       "durations are a whole number and one of s, m, h, d, w: 30s, 15m, 2h, 7d");
      Advance();
      t.text += unit;
      auto d = ParseDuration(t.text);
      if (!d) return ErrorAt(t.pos, d.error().message());
      t.kind = Tok::kDuration;
      t.ms = *d;
      return Status::Ok();
    }
    t.kind = Tok::kNumber;
    t.number = std::strtod(t.text.c_str(), nullptr);
    if (!std::isfinite(t.number)) return ErrorAt(t.pos, "the number " + t.text + " is too large");
    return Status::Ok();
  }

  Status String(Token& t) {
    Advance();  // opening quote
    t.kind = Tok::kString;
    for (;;) {
      if (i_ >= src_.size() || Peek() == '\n')
        return ErrorAt(t.pos, "this string is not closed", "end it with \" on the same line");
      const char c = Peek();
      if (c == '"') {
        Advance();
        return Status::Ok();
      }
      if (c != '\\') {
        t.text += c;
        Advance();
        continue;
      }
      const Pos esc = pos_;
      Advance();
      const char e = Peek();
      if (i_ >= src_.size()) return ErrorAt(esc, "the string ends inside an escape");
      Advance();
      switch (e) {
        case '"':
          t.text += '"';
          break;
        case '\\':
          t.text += '\\';
          break;
        case '/':
          t.text += '/';
          break;
        case 'n':
          t.text += '\n';
          break;
        case 't':
          t.text += '\t';
          break;
        case 'r':
          t.text += '\r';
          break;
        case 'b':
          t.text += '\b';
          break;
        case 'f':
          t.text += '\f';
          break;
        case 'u': {
          uint32_t cp = 0;
          NUDGE_TRY(Hex4(esc, cp));
          if (cp >= 0xD800 && cp <= 0xDBFF && Peek() == '\\' && Peek(1) == 'u') {
            Advance();
            Advance();
            uint32_t low = 0;
            NUDGE_TRY(Hex4(esc, low));
            if (low < 0xDC00 || low > 0xDFFF) return ErrorAt(esc, "an unpaired UTF-16 surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xD800 && cp <= 0xDFFF) {
            return ErrorAt(esc, "an unpaired UTF-16 surrogate");
          }
          AppendUtf8(t.text, cp);
          break;
        }
        default:
          return ErrorAt(esc, std::string("unknown escape \\") + e,
                         "use \\\" \\\\ \\n \\t \\uXXXX");
      }
    }
  }

  Status Hex4(Pos esc, uint32_t& out) {
    for (int k = 0; k < 4; ++k) {
      const char h = Peek();
      int v;
      if (h >= '0' && h <= '9') {
        v = h - '0';
      } else if (h >= 'a' && h <= 'f') {
        v = h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        v = h - 'A' + 10;
      } else {
        return ErrorAt(esc, "\\u needs four hexadecimal digits");
      }
      out = out * 16 + static_cast<uint32_t>(v);
      Advance();
    }
    return Status::Ok();
  }

  Status Punct(Token& t) {
    const char c = Peek();
    const char n = Peek(1);
    auto one = [&](Tok k) {
      t.kind = k;
      t.text = std::string(1, c);
      Advance();
      return Status::Ok();
    };
    auto two = [&](Tok k) {
      t.kind = k;
      t.text = std::string{c, n};
      Advance();
      Advance();
      return Status::Ok();
    };
    switch (c) {
      case '(':
        return one(Tok::kLParen);
      case ')':
        return one(Tok::kRParen);
      case '[':
        return one(Tok::kLBracket);
      case ']':
        return one(Tok::kRBracket);
      case ',':
        return one(Tok::kComma);
      case '.':
        return one(Tok::kDot);
      case '+':
        return one(Tok::kPlus);
      case '-':
        return one(Tok::kMinus);
      case '=':
        if (n == '=') return two(Tok::kEq);
        return ErrorAt(pos_, "'=' alone is not an operator", "compare with ==");
      case '!':
        if (n == '=') return two(Tok::kNe);
        return ErrorAt(pos_, "'!' alone is not an operator", "write `not` or !=");
      case '<':
        if (n == '=') return two(Tok::kLe);
        return one(Tok::kLt);
      case '>':
        if (n == '=') return two(Tok::kGe);
        return one(Tok::kGt);
      case '&':
      case '|':
        return ErrorAt(pos_, std::string("'") + c + "' is not an operator",
                       c == '&' ? "write `and`" : "write `or`");
      case '\'':
        return ErrorAt(pos_, "strings are written in double quotes", "\"like this\"");
      default:
        return ErrorAt(pos_, std::string("unexpected character '") + c + "'");
    }
  }

  std::string_view src_;
  size_t i_ = 0;
  Pos pos_;
};

// ---------------------------------------------------------------------------------------------
// Nodes

// The type an expression is known to have before evaluation; kAny for data paths.
enum class SType { kAny, kNull, kBool, kNumber, kString, kTime, kDuration, kList };

std::string_view STypeName(SType t) {
  switch (t) {
    case SType::kAny:
      return "a value";
    case SType::kNull:
      return "null";
    case SType::kBool:
      return "a boolean";
    case SType::kNumber:
      return "a number";
    case SType::kString:
      return "a string";
    case SType::kTime:
      return "a timestamp";
    case SType::kDuration:
      return "a duration";
    case SType::kList:
      return "a list";
  }
  return "a value";
}

struct Node {
  Pos pos;
  SType type = SType::kAny;
  virtual ~Node() = default;
  virtual Value Eval(const Env& env) const = 0;
  // Folds into `best` the earliest future time this subtree's value could change by time.
  virtual void NextChange(const Env& env, std::optional<Millis>& best) const {
    (void)env;
    (void)best;
  }
  // True when the value is `now + offset` (offset returned), for finding when comparisons flip.
  virtual bool NowPlus(Millis& offset) const {
    (void)offset;
    return false;
  }
  // A canonical rendering: equal conditions render equally (used to share aggregates).
  virtual std::string Canon() const = 0;
};

using NodePtr = std::unique_ptr<Node>;

void Fold(std::optional<Millis>& best, Millis candidate) {
  if (!best || candidate < *best) best = candidate;
}

std::string CanonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

struct LiteralNode final : Node {
  Value value;
  std::string storage;               // the string a kString value points into
  std::vector<Value> items;          // a list's elements
  std::vector<std::string> strings;  // the strings list elements point into
  std::string canon;
  Value Eval(const Env&) const override { return value; }
  std::string Canon() const override { return canon; }
};

struct PathNode final : Node {
  Root root = Root::kTraits;
  std::vector<std::string> path;
  Value Eval(const Env& env) const override { return env.Path(root, path); }
  std::string Canon() const override {
    static constexpr std::array<const char*, 4> kRoots = {"traits", "properties", "context",
                                                          "event"};
    std::string out = kRoots[static_cast<int>(root)];
    for (const auto& p : path) out += "." + CanonString(p);
    return out;
  }
};

struct AndOrNode final : Node {
  bool is_and = true;
  std::vector<NodePtr> parts;
  Value Eval(const Env& env) const override {
    for (const auto& p : parts) {
      const bool v = p->Eval(env).truthy();
      if (is_and && !v) return Value::Bool(false);
      if (!is_and && v) return Value::Bool(true);
    }
    return Value::Bool(is_and);
  }
  void NextChange(const Env& env, std::optional<Millis>& best) const override {
    for (const auto& p : parts) p->NextChange(env, best);
  }
  std::string Canon() const override {
    std::string out = "(";
    for (size_t i = 0; i < parts.size(); ++i) {
      if (i) out += is_and ? " and " : " or ";
      out += parts[i]->Canon();
    }
    return out + ")";
  }
};

struct NotNode final : Node {
  NodePtr inner;
  Value Eval(const Env& env) const override { return Value::Bool(!inner->Eval(env).truthy()); }
  void NextChange(const Env& env, std::optional<Millis>& best) const override {
    inner->NextChange(env, best);
  }
  std::string Canon() const override { return "not " + inner->Canon(); }
};

enum class CmpOp { kEq, kNe, kLt, kLe, kGt, kGe };

struct CompareNode final : Node {
  CmpOp op = CmpOp::kEq;
  NodePtr lhs, rhs;
  Value Eval(const Env& env) const override {
    const Value a = lhs->Eval(env), b = rhs->Eval(env);
    switch (op) {
      case CmpOp::kEq:
        return Value::Bool(Equal(a, b));
      case CmpOp::kNe:
        return Value::Bool(!Equal(a, b));
      default:
        break;
    }
    bool ordered = false;
    const int c = Compare(a, b, ordered);
    if (!ordered) return Value::Bool(false);
    switch (op) {
      case CmpOp::kLt:
        return Value::Bool(c < 0);
      case CmpOp::kLe:
        return Value::Bool(c <= 0);
      case CmpOp::kGt:
        return Value::Bool(c > 0);
      case CmpOp::kGe:
        return Value::Bool(c >= 0);
      default:
        return Value::Bool(false);
    }
  }
  void NextChange(const Env& env, std::optional<Millis>& best) const override {
    lhs->NextChange(env, best);
    rhs->NextChange(env, best);
    // `X < now - 90d` flips when now reaches X + 90d.
    Millis offset = 0;
    const Node* fixed = nullptr;
    if (rhs->NowPlus(offset)) {
      fixed = lhs.get();
    } else if (lhs->NowPlus(offset)) {
      fixed = rhs.get();
    }
    if (!fixed) return;
    Millis dummy;
    if (fixed->NowPlus(dummy)) return;  // both move with now: never flips
    const Value v = fixed->Eval(env);
    Value now_value = Value::Time(env.Now() + offset);
    bool ordered = false;
    (void)Compare(v, now_value, ordered);
    if (!ordered) return;
    int64_t at = 0;
    if (v.type == Type::kTime) {
      at = v.ms;
    } else if (auto t = core::TryParseIso8601(v.str)) {
      at = *t;
    } else {
      return;
    }
    // The two sides are equal when now = at - offset; the result may change then and 1 ms
    // later (strict versus non-strict comparisons).
    for (Millis candidate : {at - offset, at - offset + 1})
      if (candidate > env.Now()) Fold(best, candidate);
  }
  std::string Canon() const override {
    static constexpr std::array<const char*, 6> kOps = {"==", "!=", "<", "<=", ">", ">="};
    return "(" + lhs->Canon() + " " + kOps[static_cast<int>(op)] + " " + rhs->Canon() + ")";
  }
};

struct InNode final : Node {
  bool negate = false;
  NodePtr lhs, rhs;
  Value Eval(const Env& env) const override {
    const bool found = Contains(rhs->Eval(env), lhs->Eval(env));
    return Value::Bool(found != negate);
  }
  void NextChange(const Env& env, std::optional<Millis>& best) const override {
    lhs->NextChange(env, best);
    rhs->NextChange(env, best);
  }
  std::string Canon() const override {
    return "(" + lhs->Canon() + (negate ? " not in " : " in ") + rhs->Canon() + ")";
  }
};

enum class StrOp { kContains, kStartsWith, kEndsWith };

struct StrOpNode final : Node {
  StrOp op = StrOp::kContains;
  NodePtr lhs, rhs;
  Value Eval(const Env& env) const override {
    const Value a = lhs->Eval(env), b = rhs->Eval(env);
    if (op == StrOp::kContains && (a.type == Type::kList || a.type == Type::kJson))
      return Value::Bool(Contains(a, b));
    if (a.type != Type::kString || b.type != Type::kString) return Value::Bool(false);
    switch (op) {
      case StrOp::kContains:
        return Value::Bool(a.str.find(b.str) != std::string_view::npos);
      case StrOp::kStartsWith:
        return Value::Bool(a.str.starts_with(b.str));
      case StrOp::kEndsWith:
        return Value::Bool(a.str.ends_with(b.str));
    }
    return Value::Bool(false);
  }
  void NextChange(const Env& env, std::optional<Millis>& best) const override {
    lhs->NextChange(env, best);
    rhs->NextChange(env, best);
  }
  std::string Canon() const override {
    static constexpr std::array<const char*, 3> kOps = {"contains", "starts_with", "ends_with"};
    return "(" + lhs->Canon() + " " + kOps[static_cast<int>(op)] + " " + rhs->Canon() + ")";
  }
};

struct MatchesNode final : Node {
  NodePtr lhs;
  std::unique_ptr<re2::RE2> re;
  std::string pattern;
  Value Eval(const Env& env) const override {
    const Value a = lhs->Eval(env);
    if (a.type != Type::kString) return Value::Bool(false);
    return Value::Bool(re2::RE2::PartialMatch(re2::StringPiece(a.str.data(), a.str.size()), *re));
  }
  void NextChange(const Env& env, std::optional<Millis>& best) const override {
    lhs->NextChange(env, best);
  }
  std::string Canon() const override {
    return "(" + lhs->Canon() + " matches " + CanonString(pattern) + ")";
  }
};

struct ExistsNode final : Node {
  NodePtr inner;
  Value Eval(const Env& env) const override { return Value::Bool(!inner->Eval(env).is_null()); }
  void NextChange(const Env& env, std::optional<Millis>& best) const override {
    inner->NextChange(env, best);
  }
  std::string Canon() const override { return "(" + inner->Canon() + " exists)"; }
};

struct ArithNode final : Node {
  bool plus = true;
  NodePtr lhs, rhs;
  Value Eval(const Env& env) const override {
    const Value a = lhs->Eval(env), b = rhs->Eval(env);
    const int64_t sign = plus ? 1 : -1;
    if (a.type == Type::kNumber && b.type == Type::kNumber)
      return Value::Number(plus ? a.num + b.num : a.num - b.num);
    if (b.type == Type::kDuration) {
      int64_t t = 0;
      if (a.type == Type::kTime) return Value::Time(a.ms + sign * b.ms);
      if (a.type == Type::kDuration) return Value::Duration(a.ms + sign * b.ms);
      if (a.type == Type::kString) {
        if (auto parsed = core::TryParseIso8601(a.str)) {
          t = *parsed;
          return Value::Time(t + sign * b.ms);
        }
      }
    }
    if (plus && a.type == Type::kDuration && b.type == Type::kTime) return Value::Time(a.ms + b.ms);
    if (!plus && a.type == Type::kTime && b.type == Type::kTime)
      return Value::Duration(a.ms - b.ms);
    return Value::Null();
  }
  bool NowPlus(Millis& offset) const override {
    Millis inner = 0;
    const auto* lit = dynamic_cast<const LiteralNode*>(rhs.get());
    if (!lhs->NowPlus(inner) || !lit || lit->value.type != Type::kDuration) return false;
    offset = inner + (plus ? lit->value.ms : -lit->value.ms);
    return true;
  }
  void NextChange(const Env& env, std::optional<Millis>& best) const override {
    lhs->NextChange(env, best);
    rhs->NextChange(env, best);
  }
  std::string Canon() const override {
    return "(" + lhs->Canon() + (plus ? " + " : " - ") + rhs->Canon() + ")";
  }
};

struct AggregateNode final : Node {
  std::shared_ptr<AggregateSpec> spec;
  Value Eval(const Env& env) const override { return env.Aggregate(*spec); }
  void NextChange(const Env& env, std::optional<Millis>& best) const override {
    if (auto t = env.AggregateExpiry(*spec); t && *t > env.Now()) Fold(best, *t);
  }
  std::string Canon() const override { return spec->key; }
};

struct InSegmentNode final : Node {
  std::string id;
  Value Eval(const Env& env) const override { return Value::Bool(env.InSegment(id)); }
  std::string Canon() const override { return "in segment " + CanonString(id); }
};

struct SubscribedNode final : Node {
  std::string channel, topic;
  Value Eval(const Env& env) const override { return Value::Bool(env.Subscribed(channel, topic)); }
  std::string Canon() const override {
    return topic.empty() ? "subscribed(" + channel + ")"
                         : "subscribed(topic " + CanonString(topic) + ")";
  }
};

enum class Builtin { kNow, kFirstSeen, kLastSeen, kScore, kStage, kTags, kSource };

struct BuiltinNode final : Node {
  Builtin which = Builtin::kNow;
  Value Eval(const Env& env) const override {
    switch (which) {
      case Builtin::kNow:
        return Value::Time(env.Now());
      case Builtin::kFirstSeen:
        return Value::Time(env.FirstSeen());
      case Builtin::kLastSeen:
        return Value::Time(env.LastSeen());
      case Builtin::kScore:
        return Value::Number(env.Score());
      case Builtin::kStage: {
        const std::string_view s = env.Stage();
        return s.empty() ? Value::Null() : Value::String(s);
      }
      case Builtin::kTags:
        return env.Tags();
      case Builtin::kSource:
        return env.Source();
    }
    return Value::Null();
  }
  bool NowPlus(Millis& offset) const override {
    offset = 0;
    return which == Builtin::kNow;
  }
  std::string Canon() const override {
    static constexpr std::array<const char*, 7> kNames = {
        "now", "first_seen", "last_seen", "score", "stage", "tags", "source"};
    return kNames[static_cast<int>(which)];
  }
};

// ---------------------------------------------------------------------------------------------
// Parser

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string Suggest(std::string_view word, std::initializer_list<std::string_view> known) {
  std::string best;
  size_t best_d = 3;
  for (auto k : known) {
    const size_t d = EditDistance(word, k);
    if (d < best_d) {
      best_d = d;
      best = std::string(k);
    }
  }
  return best.empty() ? "" : "did you mean " + best + "?";
}

const std::initializer_list<std::string_view> kWords = {
    "traits", "properties", "context",     "event",     "count",      "sum",       "last",  "first",
    "in",     "segment",    "subscribed",  "now",       "first_seen", "last_seen", "score", "stage",
    "tags",   "source",     "true",        "false",     "null",       "and",       "or",    "not",
    "exists", "contains",   "starts_with", "ends_with", "matches"};

class Parser {
 public:
  Parser(std::vector<Token> tokens, bool event_in_scope)
      : tokens_(std::move(tokens)), event_scope_(event_in_scope) {}

  Result<NodePtr> Parse() {
    NUDGE_ASSIGN_OR_RETURN(NodePtr root, Or());
    if (At().kind != Tok::kEnd) return Err(Unexpected("and, or, or the end of the condition"));
    NUDGE_TRY(RequireBool(*root, "the condition"));
    return root;
  }

  std::vector<std::shared_ptr<AggregateSpec>> aggregates;
  std::vector<std::string> segments;
  std::vector<std::string> topics;
  std::vector<double> score_thresholds;
  bool reads_event = false;
  uint8_t reads = 0;  // Condition::Reads
  std::vector<std::vector<std::string>> trait_paths;

 private:
  const Token& At() const { return tokens_[i_]; }
  const Token& Next() { return tokens_[i_++]; }
  bool IsWord(std::string_view w) const { return At().kind == Tok::kIdent && At().text == w; }
  bool AcceptWord(std::string_view w) {
    if (!IsWord(w)) return false;
    ++i_;
    return true;
  }
  bool Accept(Tok k) {
    if (At().kind != k) return false;
    ++i_;
    return true;
  }
  Status Unexpected(std::string_view wanted, std::string_view hint = {}) const {
    return ErrorAt(At().pos, "expected " + std::string(wanted) + ", found " + Describe(At()), hint);
  }
  Status Expect(Tok k, std::string_view what) {
    if (Accept(k)) return Status::Ok();
    return Unexpected(what);
  }
  Status ExpectWord(std::string_view w) {
    if (AcceptWord(w)) return Status::Ok();
    return Unexpected("'" + std::string(w) + "'");
  }

  // How deep the tree may grow along one path (parentheses, `not`, each `+` or `-` of a chain):
  // parsing, evaluating, printing and freeing it recurse, and a few kilobytes of "((((" must
  // not take the server's stack.
  static constexpr int kMaxNesting = 100;
  int nesting_ = 0;
  // Restores the nesting when the construct it counted ends.
  struct NestingScope {
    int& nesting;
    int saved;
    ~NestingScope() { nesting = saved; }
  };
  Status Nest(Pos pos) {
    if (++nesting_ <= kMaxNesting) return Status::Ok();
    return ErrorAt(pos, "the condition is nested more than " + std::to_string(kMaxNesting) +
                            " levels deep (parentheses, not, + and -)");
  }

  Status RequireBool(const Node& n, std::string_view what) const {
    if (n.type == SType::kBool) return Status::Ok();
    std::string hint;
    if (dynamic_cast<const PathNode*>(&n))
      hint = "compare it (" + n.Canon() + " == true) or test it (" + n.Canon() + " exists)";
    return ErrorAt(
        n.pos,
        std::string(what) + " must be true or false, but this is " + std::string(STypeName(n.type)),
        hint);
  }

  Result<NodePtr> Or() {
    NUDGE_ASSIGN_OR_RETURN(NodePtr first, And());
    if (!IsWord("or")) return first;
    auto node = std::make_unique<AndOrNode>();
    node->is_and = false;
    node->pos = first->pos;
    node->type = SType::kBool;
    NUDGE_TRY(RequireBool(*first, "each side of 'or'"));
    node->parts.push_back(std::move(first));
    while (AcceptWord("or")) {
      NUDGE_ASSIGN_OR_RETURN(NodePtr next, And());
      NUDGE_TRY(RequireBool(*next, "each side of 'or'"));
      node->parts.push_back(std::move(next));
    }
    return NodePtr(std::move(node));
  }

  Result<NodePtr> And() {
    NUDGE_ASSIGN_OR_RETURN(NodePtr first, Not());
    if (!IsWord("and")) return first;
    auto node = std::make_unique<AndOrNode>();
    node->pos = first->pos;
    node->type = SType::kBool;
    NUDGE_TRY(RequireBool(*first, "each side of 'and'"));
    node->parts.push_back(std::move(first));
    while (AcceptWord("and")) {
      NUDGE_ASSIGN_OR_RETURN(NodePtr next, Not());
      NUDGE_TRY(RequireBool(*next, "each side of 'and'"));
      node->parts.push_back(std::move(next));
    }
    return NodePtr(std::move(node));
  }

  Result<NodePtr> Not() {
    // At the start of a term, "not in" can only be "not" before "in segment"; elsewhere it is
    // the operator of `x not in [...]`, which needs a left side.
    const auto word_at = [&](size_t k, std::string_view w) {
      return i_ + k < tokens_.size() && tokens_[i_ + k].kind == Tok::kIdent &&
             tokens_[i_ + k].text == w;
    };
    if (IsWord("not") && (!word_at(1, "in") || word_at(2, "segment"))) {
      const Pos pos = Next().pos;
      NestingScope scope{nesting_, nesting_};
      NUDGE_TRY(Nest(pos));
      NUDGE_ASSIGN_OR_RETURN(NodePtr inner, Not());
      NUDGE_TRY(RequireBool(*inner, "what follows 'not'"));
      auto node = std::make_unique<NotNode>();
      node->pos = pos;
      node->type = SType::kBool;
      node->inner = std::move(inner);
      return NodePtr(std::move(node));
    }
    return Test();
  }

  static bool Orderable(SType t) {
    return t == SType::kAny || t == SType::kNumber || t == SType::kString || t == SType::kTime ||
           t == SType::kDuration;
  }
  static bool Comparable(SType a, SType b) {
    if (a == SType::kAny || b == SType::kAny || a == SType::kNull || b == SType::kNull) return true;
    if (a == b) return true;
    return (a == SType::kTime && b == SType::kString) || (a == SType::kString && b == SType::kTime);
  }

  Result<NodePtr> Test() {
    NUDGE_ASSIGN_OR_RETURN(NodePtr lhs, Sum());
    const Token op = At();
    auto compare = [&](CmpOp cop) -> Result<NodePtr> {
      ++i_;
      NUDGE_ASSIGN_OR_RETURN(NodePtr rhs, Sum());
      const bool ordering = cop != CmpOp::kEq && cop != CmpOp::kNe;
      if (!Comparable(lhs->type, rhs->type) ||
          (ordering && (!Orderable(lhs->type) || !Orderable(rhs->type))))
        return Err(ErrorAt(op.pos,
                           "cannot compare " + std::string(STypeName(lhs->type)) + " with " +
                               std::string(STypeName(rhs->type)) + " using " + op.text,
                           lhs->type == SType::kNumber || rhs->type == SType::kNumber
                               ? "counts, sums and scores compare with numbers: count(...) >= 3"
                               : "compare like with like: timestamps with timestamps (now - 3d), "
                                 "numbers with numbers"));
      for (const Node* side : {lhs.get(), rhs.get()}) {
        const auto* b = dynamic_cast<const BuiltinNode*>(side);
        const auto* lit =
            dynamic_cast<const LiteralNode*>(side == lhs.get() ? rhs.get() : lhs.get());
        if (b && b->which == Builtin::kScore && lit && lit->value.type == Type::kNumber)
          score_thresholds.push_back(lit->value.num);
      }
      auto node = std::make_unique<CompareNode>();
      node->pos = lhs->pos;
      node->type = SType::kBool;
      node->op = cop;
      node->lhs = std::move(lhs);
      node->rhs = std::move(rhs);
      return NodePtr(std::move(node));
    };
    switch (op.kind) {
      case Tok::kEq:
        return compare(CmpOp::kEq);
      case Tok::kNe:
        return compare(CmpOp::kNe);
      case Tok::kLt:
        return compare(CmpOp::kLt);
      case Tok::kLe:
        return compare(CmpOp::kLe);
      case Tok::kGt:
        return compare(CmpOp::kGt);
      case Tok::kGe:
        return compare(CmpOp::kGe);
      default:
        break;
    }
    if (op.kind != Tok::kIdent) return lhs;
    if (op.text == "in" ||
        (op.text == "not" && tokens_[i_ + 1].kind == Tok::kIdent && tokens_[i_ + 1].text == "in")) {
      const bool negate = op.text == "not";
      i_ += negate ? 2 : 1;
      if (IsWord("segment"))
        return Err(ErrorAt(At().pos, "'in segment' stands on its own",
                           "write: in segment \"id\" and ..."));
      NUDGE_ASSIGN_OR_RETURN(NodePtr rhs, Sum());
      if (rhs->type != SType::kList && rhs->type != SType::kAny)
        return Err(ErrorAt(rhs->pos,
                           "'in' needs a list or a path, not " + std::string(STypeName(rhs->type)),
                           "traits.country in [\"DE\", \"FR\"]"));
      auto node = std::make_unique<InNode>();
      node->pos = lhs->pos;
      node->type = SType::kBool;
      node->negate = negate;
      node->lhs = std::move(lhs);
      node->rhs = std::move(rhs);
      return NodePtr(std::move(node));
    }
    if (op.text == "contains" || op.text == "starts_with" || op.text == "ends_with") {
      ++i_;
      NUDGE_ASSIGN_OR_RETURN(NodePtr rhs, Sum());
      const StrOp sop = op.text == "contains"      ? StrOp::kContains
                        : op.text == "starts_with" ? StrOp::kStartsWith
                                                   : StrOp::kEndsWith;
      const bool lhs_ok = lhs->type == SType::kAny || lhs->type == SType::kString ||
                          (sop == StrOp::kContains && lhs->type == SType::kList);
      const bool rhs_ok = sop == StrOp::kContains
                              ? rhs->type != SType::kList
                              : (rhs->type == SType::kAny || rhs->type == SType::kString);
      if (!lhs_ok || !rhs_ok)
        return Err(ErrorAt(op.pos, "'" + op.text + "' works on strings" +
                                       (sop == StrOp::kContains ? " and lists" : "") + ", not " +
                                       std::string(STypeName(lhs_ok ? rhs->type : lhs->type))));
      auto node = std::make_unique<StrOpNode>();
      node->pos = lhs->pos;
      node->type = SType::kBool;
      node->op = sop;
      node->lhs = std::move(lhs);
      node->rhs = std::move(rhs);
      return NodePtr(std::move(node));
    }
    if (op.text == "matches") {
      ++i_;
      if (At().kind != Tok::kString)
        return Err(Unexpected("a regular expression in double quotes", "matches \"^acme-\""));
      const Token pat = Next();
      if (lhs->type != SType::kAny && lhs->type != SType::kString)
        return Err(ErrorAt(op.pos,
                           "'matches' works on strings, not " + std::string(STypeName(lhs->type))));
      re2::RE2::Options options;
      options.set_log_errors(false);
      options.set_max_mem(1 << 20);  // refuses expressions whose automaton would be too large
      auto re = std::make_unique<re2::RE2>(pat.text, options);
      if (re->error_code() == re2::RE2::ErrorPatternTooLarge)
        return Err(ErrorAt(pat.pos, "the regular expression is too expensive (past RE2's limits)",
                           "simplify it, e.g. fewer nested repetitions"));
      if (!re->ok())
        return Err(ErrorAt(pat.pos, "invalid regular expression: " + re->error(),
                           "RE2 syntax; no backreferences or lookaround"));
      if (re->ProgramSize() > 10000)
        return Err(ErrorAt(pat.pos,
                           "the regular expression is too expensive (program size " +
                               std::to_string(re->ProgramSize()) + " > 10000)",
                           "simplify it, e.g. fewer nested repetitions"));
      auto node = std::make_unique<MatchesNode>();
      node->pos = lhs->pos;
      node->type = SType::kBool;
      node->lhs = std::move(lhs);
      node->re = std::move(re);
      node->pattern = pat.text;
      return NodePtr(std::move(node));
    }
    if (op.text == "exists") {
      ++i_;
      auto node = std::make_unique<ExistsNode>();
      node->pos = lhs->pos;
      node->type = SType::kBool;
      node->inner = std::move(lhs);
      return NodePtr(std::move(node));
    }
    return lhs;
  }

  Result<NodePtr> Sum() {
    NUDGE_ASSIGN_OR_RETURN(NodePtr lhs, Term());
    NestingScope scope{nesting_, nesting_};  // each operator nests the tree one level deeper
    while (At().kind == Tok::kPlus || At().kind == Tok::kMinus) {
      const Token op = Next();
      NUDGE_TRY(Nest(op.pos));
      NUDGE_ASSIGN_OR_RETURN(NodePtr rhs, Term());
      const bool plus = op.kind == Tok::kPlus;
      SType result = SType::kAny;
      const SType a = lhs->type, b = rhs->type;
      auto bad = [&]() {
        return ErrorAt(op.pos,
                       "cannot " + std::string(plus ? "add " : "subtract ") +
                           std::string(STypeName(b)) + (plus ? " to " : " from ") +
                           std::string(STypeName(a)),
                       "timestamps move by durations: now - 3d, last(event \"X\").timestamp + 1d");
      };
      if (a == SType::kBool || b == SType::kBool || a == SType::kList || b == SType::kList ||
          a == SType::kNull || b == SType::kNull || a == SType::kString || b == SType::kString)
        return Err(bad());
      if (a == SType::kNumber || b == SType::kNumber) {
        if ((a != SType::kNumber && a != SType::kAny) || (b != SType::kNumber && b != SType::kAny))
          return Err(bad());
        result = SType::kNumber;
      } else if (b == SType::kDuration) {
        result = a == SType::kDuration ? SType::kDuration : SType::kTime;
      } else if (a == SType::kTime && b == SType::kTime) {
        if (plus) return Err(bad());
        result = SType::kDuration;
      } else if (a == SType::kDuration && b == SType::kTime && plus) {
        result = SType::kTime;
      } else if (a == SType::kAny || b == SType::kAny) {
        result = SType::kAny;
      } else {
        return Err(bad());
      }
      auto node = std::make_unique<ArithNode>();
      node->pos = lhs->pos;
      node->type = result;
      node->plus = plus;
      node->lhs = std::move(lhs);
      node->rhs = std::move(rhs);
      lhs = std::move(node);
    }
    return lhs;
  }

  Result<NodePtr> Term() {
    const Token& t = At();
    switch (t.kind) {
      case Tok::kLParen: {
        NestingScope scope{nesting_, nesting_};
        NUDGE_TRY(Nest(t.pos));
        ++i_;
        NUDGE_ASSIGN_OR_RETURN(NodePtr inner, Or());
        if (!Accept(Tok::kRParen)) return Err(Unexpected("')'"));
        return inner;
      }
      case Tok::kString:
      case Tok::kNumber:
      case Tok::kDuration:
      case Tok::kTime:
      case Tok::kLBracket:
      case Tok::kMinus:
        return Literal();
      case Tok::kIdent:
        break;
      default:
        return Err(Unexpected("a value, a path or a test"));
    }
    const std::string& w = t.text;
    if (w == "true" || w == "false" || w == "null") return Literal();
    if (w == "traits" || w == "properties" || w == "context") return Path();
    if (w == "event") {
      if (tokens_[i_ + 1].kind == Tok::kDot) return Path();
      return Behaviour(AggregateSpec::Kind::kExists);
    }
    if (w == "count") return Behaviour(AggregateSpec::Kind::kCount);
    if (w == "sum") return Behaviour(AggregateSpec::Kind::kSum);
    if (w == "last") return Behaviour(AggregateSpec::Kind::kLast);
    if (w == "first") return Behaviour(AggregateSpec::Kind::kFirst);
    if (w == "in") {
      const Pos pos = Next().pos;
      NUDGE_TRY(ExpectWord("segment"));
      if (At().kind != Tok::kString) return Err(Unexpected("a segment id in double quotes"));
      auto node = std::make_unique<InSegmentNode>();
      node->pos = pos;
      node->type = SType::kBool;
      node->id = Next().text;
      if (std::find(segments.begin(), segments.end(), node->id) == segments.end())
        segments.push_back(node->id);
      return NodePtr(std::move(node));
    }
    if (w == "subscribed") {
      const Pos pos = Next().pos;
      NUDGE_TRY(Expect(Tok::kLParen, "'('"));
      auto node = std::make_unique<SubscribedNode>();
      node->pos = pos;
      reads |= Condition::kReadsSubscribed;
      node->type = SType::kBool;
      if (AcceptWord("topic")) {
        if (At().kind != Tok::kString) return Err(Unexpected("a topic in double quotes"));
        node->topic = Next().text;
        node->channel = "email";
        if (std::find(topics.begin(), topics.end(), node->topic) == topics.end())
          topics.push_back(node->topic);
      } else if (At().kind == Tok::kIdent && (At().text == "email" || At().text == "sms" ||
                                              At().text == "push" || At().text == "webhook")) {
        node->channel = Next().text;
      } else {
        return Err(Unexpected("a channel (email, sms, push, webhook) or topic \"name\""));
      }
      NUDGE_TRY(Expect(Tok::kRParen, "')'"));
      return NodePtr(std::move(node));
    }
    static const std::unordered_map<std::string_view, Builtin> kBuiltins = {
        {"now", Builtin::kNow},
        {"first_seen", Builtin::kFirstSeen},
        {"last_seen", Builtin::kLastSeen},
        {"score", Builtin::kScore},
        {"stage", Builtin::kStage},
        {"tags", Builtin::kTags},
        {"source", Builtin::kSource}};
    if (auto it = kBuiltins.find(w); it != kBuiltins.end()) {
      auto node = std::make_unique<BuiltinNode>();
      node->pos = Next().pos;
      node->which = it->second;
      const Builtin b = it->second;
      reads |= b == Builtin::kScore                           ? Condition::kReadsScore
               : b == Builtin::kStage                         ? Condition::kReadsStage
               : b == Builtin::kNow                           ? 0
               : b == Builtin::kTags || b == Builtin::kSource ? Condition::kReadsContact
                                                              : Condition::kReadsSeen;
      node->type = b == Builtin::kScore                            ? SType::kNumber
                   : b == Builtin::kStage || b == Builtin::kSource ? SType::kString
                   : b == Builtin::kTags                           ? SType::kList
                                                                   : SType::kTime;
      return NodePtr(std::move(node));
    }
    if (tokens_[i_ + 1].kind == Tok::kDot) {
      return Err(ErrorAt(t.pos, "unknown path root '" + w + "'",
                         Suggest(w, {"traits", "properties", "context", "event"}).empty()
                             ? "paths start with traits., properties., context. or event."
                             : Suggest(w, {"traits", "properties", "context", "event"})));
    }
    std::string hint = Suggest(w, kWords);
    return Err(ErrorAt(t.pos, "unknown word '" + w + "'",
                       hint.empty() ? "strings are written in double quotes" : hint));
  }

  Result<NodePtr> Literal() {
    auto node = std::make_unique<LiteralNode>();
    node->pos = At().pos;
    NUDGE_TRY(LiteralValue(*node, /*in_list=*/false));
    return NodePtr(std::move(node));
  }

  // Reads one literal into node (value/type/canon), owning any string it needs.
  Status LiteralValue(LiteralNode& node, bool in_list) {
    const Token t = Next();
    switch (t.kind) {
      case Tok::kString:
        if (in_list) {
          node.strings.push_back(t.text);
          node.value = Value::String(node.strings.back());
        } else {
          node.storage = t.text;
          node.value = Value::String(node.storage);
        }
        node.type = SType::kString;
        node.canon = CanonString(t.text);
        return Status::Ok();
      case Tok::kNumber:
        node.value = Value::Number(t.number);
        node.type = SType::kNumber;
        node.canon = t.text;
        return Status::Ok();
      case Tok::kMinus: {
        if (At().kind != Tok::kNumber && At().kind != Tok::kDuration)
          return ErrorAt(t.pos, "a '-' here must start a negative number");
        const Token n = Next();
        if (n.kind == Tok::kNumber) {
          node.value = Value::Number(-n.number);
          node.type = SType::kNumber;
        } else {
          node.value = Value::Duration(-n.ms);
          node.type = SType::kDuration;
        }
        node.canon = "-" + n.text;
        return Status::Ok();
      }
      case Tok::kDuration:
        node.value = Value::Duration(t.ms);
        node.type = SType::kDuration;
        node.canon = t.text;
        return Status::Ok();
      case Tok::kTime:
        node.value = Value::Time(t.ms);
        node.type = SType::kTime;
        node.canon = core::FormatIso8601(t.ms);
        return Status::Ok();
      case Tok::kIdent:
        if (t.text == "true" || t.text == "false") {
          node.value = Value::Bool(t.text == "true");
          node.type = SType::kBool;
          node.canon = t.text;
          return Status::Ok();
        }
        if (t.text == "null") {
          node.value = Value::Null();
          node.type = SType::kNull;
          node.canon = "null";
          return Status::Ok();
        }
        return ErrorAt(t.pos, "a list holds literals only, not '" + t.text + "'");
      case Tok::kLBracket: {
        if (in_list) return ErrorAt(t.pos, "lists cannot be nested");
        node.canon = "[";
        // Elements first go to a temporary so that the strings they point to can be stable.
        std::vector<LiteralNode> elems;
        if (!Accept(Tok::kRBracket)) {
          for (;;) {
            LiteralNode e;
            e.pos = At().pos;
            NUDGE_TRY(LiteralValue(e, /*in_list=*/true));
            elems.push_back(std::move(e));
            if (Accept(Tok::kRBracket)) break;
            if (!Accept(Tok::kComma)) return Unexpected("',' or ']'");
          }
        }
        node.strings.reserve(elems.size());
        for (auto& e : elems) {
          if (e.value.type == Type::kString) node.strings.push_back(std::string(e.value.str));
        }
        size_t next_string = 0;
        for (size_t k = 0; k < elems.size(); ++k) {
          Value v = elems[k].value;
          if (v.type == Type::kString) v = Value::String(node.strings[next_string++]);
          node.items.push_back(v);
          node.canon += (k ? "," : "") + elems[k].canon;
        }
        node.canon += "]";
        node.value = Value::List(node.items.data(), static_cast<uint32_t>(node.items.size()));
        node.type = SType::kList;
        return Status::Ok();
      }
      default:
        return ErrorAt(t.pos, "expected a literal, found " + Describe(t));
    }
  }

  Result<NodePtr> Path() {
    auto node = std::make_unique<PathNode>();
    const Token root = Next();
    node->pos = root.pos;
    node->root = root.text == "traits"       ? Root::kTraits
                 : root.text == "properties" ? Root::kProperties
                 : root.text == "context"    ? Root::kContext
                                             : Root::kEvent;
    if (node->root == Root::kTraits) reads |= Condition::kReadsTraits;
    if (node->root != Root::kTraits) {
      if (!event_scope_)
        return Err(ErrorAt(root.pos, root.text + ".* belongs to an event, and there is none here",
                           "use it inside the where of an event term: event \"Order Completed\" "
                           "where " +
                               root.text + ".x == ..."));
      reads_event = true;
    }
    if (At().kind != Tok::kDot)
      return Err(Unexpected("'.' and a name after '" + root.text + "'", root.text + ".plan"));
    while (Accept(Tok::kDot)) {
      if (At().kind == Tok::kIdent || At().kind == Tok::kString) {
        node->path.push_back(Next().text);
      } else if (At().kind == Tok::kNumber &&
                 At().text.find_first_not_of("0123456789") == std::string::npos) {
        node->path.push_back(Next().text);  // an array index
      } else {
        return Err(Unexpected("a name after '.'",
                              "names with spaces go in quotes: traits.\"first name\""));
      }
    }
    if (node->root == Root::kTraits &&
        std::find(trait_paths.begin(), trait_paths.end(), node->path) == trait_paths.end())
      trait_paths.push_back(node->path);
    if (node->root == Root::kEvent) {
      static constexpr std::array<std::string_view, 4> kFields = {"name", "type", "timestamp",
                                                                  "message_id"};
      if (node->path.size() != 1 ||
          std::find(kFields.begin(), kFields.end(), node->path[0]) == kFields.end())
        return Err(ErrorAt(node->pos, "event has the fields name, type, timestamp and message_id",
                           "for the event's data use properties.x or context.x"));
      node->type = node->path[0] == "timestamp" ? SType::kTime : SType::kString;
    }
    return NodePtr(std::move(node));
  }

  Result<NodePtr> Behaviour(AggregateSpec::Kind kind) {
    const Token head = Next();
    if (in_where_)
      return Err(ErrorAt(head.pos, "an event term cannot sit inside another's where",
                         "combine them with and/or outside"));
    auto spec = std::make_shared<AggregateSpec>();
    spec->kind = kind;
    const bool call = kind != AggregateSpec::Kind::kExists;
    if (call) NUDGE_TRY(Expect(Tok::kLParen, "'(' after " + head.text));
    if (kind == AggregateSpec::Kind::kSum) {
      if (!(IsWord("properties") || IsWord("context")))
        return Err(Unexpected("what to sum: properties.x or context.x",
                              "sum(properties.revenue of event \"Order Completed\" within 30d)"));
      const bool saved = event_scope_;
      event_scope_ = true;
      const bool saved_reads = reads_event;
      auto path = Path();
      event_scope_ = saved;
      reads_event = saved_reads;
      if (!path) return Err(path.error());
      auto* p = static_cast<PathNode*>(path->get());
      spec->sum_root = p->root;
      spec->sum_path = p->path;
      NUDGE_TRY(ExpectWord("of"));
    }
    if (call) NUDGE_TRY(ExpectWord("event"));
    if (At().kind != Tok::kString)
      return Err(Unexpected("the event's name in double quotes", "event \"Order Completed\""));
    spec->event = Next().text;
    std::string where_canon;
    if (AcceptWord("where")) {
      const bool saved = event_scope_;
      const bool saved_reads = reads_event;
      event_scope_ = true;
      in_where_ = true;
      auto where = Or();
      in_where_ = false;
      event_scope_ = saved;
      reads_event = saved_reads;
      if (!where) return Err(where.error());
      NUDGE_TRY(RequireBool(**where, "a where filter"));
      where_canon = (*where)->Canon();
      spec->where = MakeWhere(std::move(*where));
    }
    if (AcceptWord("within")) {
      if (kind == AggregateSpec::Kind::kLast || kind == AggregateSpec::Kind::kFirst)
        return Err(
            ErrorAt(tokens_[i_ - 1].pos, "last(...) and first(...) take no window",
                    "compare the timestamp instead: last(event \"X\").timestamp > now - 7d"));
      if (At().kind != Tok::kDuration) return Err(Unexpected("a duration such as 7d", "within 7d"));
      const Token d = Next();
      if (d.ms <= 0) return Err(ErrorAt(d.pos, "a window must be longer than zero"));
      if (d.ms > kMaxWindow) return Err(ErrorAt(d.pos, "a window may be at most 3650d"));
      spec->window = d.ms;
    }
    if (call) NUDGE_TRY(Expect(Tok::kRParen, "')' to close " + head.text + "(...)"));
    SType type = SType::kBool;
    switch (kind) {
      case AggregateSpec::Kind::kExists:
        type = SType::kBool;
        break;
      case AggregateSpec::Kind::kCount:
      case AggregateSpec::Kind::kSum:
        type = SType::kNumber;
        break;
      case AggregateSpec::Kind::kLast:
      case AggregateSpec::Kind::kFirst:
        if (!Accept(Tok::kDot) || !AcceptWord("timestamp"))
          return Err(Unexpected("'.timestamp' after " + head.text + "(...)",
                                head.text + "(event \"X\").timestamp > now - 7d"));
        type = SType::kTime;
        break;
    }
    static constexpr std::array<const char*, 5> kKinds = {"event", "count", "sum", "last", "first"};
    spec->key =
        std::string(kKinds[static_cast<int>(kind)]) + "(" +
        (kind == AggregateSpec::Kind::kSum ? PathCanon(spec->sum_root, spec->sum_path) + " of "
                                           : std::string()) +
        "event " + CanonString(spec->event) + (where_canon.empty() ? "" : " where " + where_canon) +
        (spec->window ? " within " + std::to_string(*spec->window) + "ms" : "") + ")";
    // One spec per key in a condition: `count(...) >= 1 and count(...) < 5` shares it.
    std::shared_ptr<AggregateSpec> shared;
    for (auto& a : aggregates)
      if (a->key == spec->key) shared = a;
    if (!shared) {
      aggregates.push_back(spec);
      shared = spec;
    }
    auto node = std::make_unique<AggregateNode>();
    node->pos = head.pos;
    node->type = type;
    node->spec = std::move(shared);
    return NodePtr(std::move(node));
  }

  static std::string PathCanon(Root root, const std::vector<std::string>& path) {
    PathNode p;
    p.root = root;
    p.path = path;
    return p.Canon();
  }

  std::shared_ptr<const Condition> MakeWhere(NodePtr node);

  std::vector<Token> tokens_;
  size_t i_ = 0;
  bool event_scope_;
  bool in_where_ = false;
};

}  // namespace

struct Condition::Impl {
  std::string text;
  NodePtr root;
  std::vector<std::shared_ptr<AggregateSpec>> aggregates;
  std::vector<std::string> segments;
  std::vector<std::string> topics;
  std::vector<double> score_thresholds;
  bool reads_event = false;
  uint8_t reads = 0;
  std::vector<std::vector<std::string>> trait_paths;
};

namespace {
std::shared_ptr<const Condition> Parser::MakeWhere(NodePtr node) {
  auto impl = std::make_unique<Condition::Impl>();
  impl->text = node->Canon();
  impl->root = std::move(node);
  impl->reads_event = true;
  return std::make_shared<const Condition>(std::move(impl));
}
}  // namespace

Condition::Condition(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Condition::~Condition() = default;

bool Condition::Matches(const Env& env) const { return impl_->root->Eval(env).truthy(); }

std::optional<Millis> Condition::NextChange(const Env& env) const {
  std::optional<Millis> best;
  impl_->root->NextChange(env, best);
  return best;
}

const std::string& Condition::text() const { return impl_->text; }
const std::vector<std::shared_ptr<AggregateSpec>>& Condition::aggregates() const {
  return impl_->aggregates;
}
const std::vector<std::string>& Condition::segments() const { return impl_->segments; }
const std::vector<std::string>& Condition::topics() const { return impl_->topics; }
bool Condition::reads_event() const { return impl_->reads_event; }
uint8_t Condition::reads() const { return impl_->reads; }
const std::vector<std::vector<std::string>>& Condition::trait_paths() const {
  return impl_->trait_paths;
}
const std::vector<double>& Condition::score_thresholds() const { return impl_->score_thresholds; }

Result<std::shared_ptr<const Condition>> Condition::Compile(std::string_view text,
                                                            const CompileOptions& options) {
  if (text.size() > 64 * 1024)
    return Err(Status::Invalid("a condition may be at most 64 KB long", "1:1"));
  NUDGE_ASSIGN_OR_RETURN(auto tokens, Lexer(text).Run());
  if (tokens.size() == 1) return Err(Status::Invalid("the condition is empty", "1:1"));
  Parser parser(std::move(tokens), options.event_in_scope);
  NUDGE_ASSIGN_OR_RETURN(NodePtr root, parser.Parse());
  auto impl = std::make_unique<Impl>();
  impl->text = std::string(text);
  impl->root = std::move(root);
  impl->aggregates = std::move(parser.aggregates);
  impl->segments = std::move(parser.segments);
  impl->topics = std::move(parser.topics);
  impl->reads_event = parser.reads_event;
  impl->reads = parser.reads;
  impl->trait_paths = std::move(parser.trait_paths);
  impl->score_thresholds = std::move(parser.score_thresholds);
  return std::make_shared<const Condition>(std::move(impl));
}

Result<Millis> ParseDuration(std::string_view text) {
  if (text.size() < 2) return Err(Status::Invalid("'" + std::string(text) + "' is not a duration"));
  const char unit = text.back();
  int64_t n = 0;
  const auto digits = text.substr(0, text.size() - 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size() || n < 0)
    return Err(Status::Invalid("'" + std::string(text) +
                               "' is not a duration (a whole number and s, m, h, d or w)"));
  int64_t scale = 0;
  switch (unit) {
    case 's':
      scale = kSecond;
      break;
    case 'm':
      scale = 60 * kSecond;
      break;
    case 'h':
      scale = 3600 * kSecond;
      break;
    case 'd':
      scale = 86400 * kSecond;
      break;
    case 'w':
      scale = 7 * 86400 * kSecond;
      break;
    default:
      if (unit >= '0' && unit <= '9')
        return Err(Status::Invalid("'" + std::string(text) + "' has no unit: use s, m, h, d or w"));
      return Err(Status::Invalid("'" + std::string(text) + "' has an unknown unit '" +
                                 std::string(1, unit) + "': use s, m, h, d or w"));
  }
  if (n > kMaxWindow / scale * 10)
    return Err(Status::Invalid("the duration '" + std::string(text) + "' is too long"));
  return n * scale;
}

}  // namespace nudge::rules
