#include "content/internal/parser.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <optional>

#include "content/internal/nodes.h"
#include "content/internal/ruby.h"

namespace nudge::content::internal {
namespace {

constexpr int kMaxDepth = 100;  // Liquid::Block::MAX_DEPTH

bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool IsIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsBlankText(std::string_view s) {
  for (char c : s) {
    if (!IsRubySpace(c)) return false;
  }
  return true;
}

std::string Quote(std::string_view s) {
  std::string out = "'";
  out.append(s.substr(0, 60));
  if (s.size() > 60) out += "...";
  out += "'";
  return out;
}

// ---------------------------------------------------------------------------------------------
// The markup lexer: Liquid::Lexer.

enum class Tok : uint8_t {
  kEnd,
  kComparison,
  kString,
  kNumber,
  kId,
  kDotDot,
  kPipe,
  kDot,
  kColon,
  kComma,
  kOpenSquare,
  kCloseSquare,
  kOpenRound,
  kCloseRound,
  kQuestion,
  kDash,
};

struct Token {
  Tok kind = Tok::kEnd;
  std::string_view text;
  uint32_t pos = 0;  // offset in the template source
};

std::string Describe(const Token& t) {
  if (t.kind == Tok::kEnd) return "the end of the markup";
  return Quote(t.text);
}

class Markup {
 public:
  // `text` is a part of `source` starting at byte `base`.
  Markup(std::string_view source, std::string_view text, uint32_t base)
      : source_(source), text_(text), base_(base) {}

  Status Lex() {
    size_t i = 0;
    const std::string_view s = text_;
    while (true) {
      while (i < s.size() && IsRubySpace(s[i])) ++i;
      if (i >= s.size()) break;
      Token t;
      t.pos = base_ + static_cast<uint32_t>(i);
      const size_t start = i;
      const char c = s[i];
      auto starts = [&](std::string_view p) { return s.substr(i, p.size()) == p; };
      if (starts("==") || starts("!=") || starts("<>")) {
        i += 2;
        t.kind = Tok::kComparison;
      } else if (c == '<' || c == '>') {
        i += (i + 1 < s.size() && s[i + 1] == '=') ? 2 : 1;
        t.kind = Tok::kComparison;
      } else if (starts("contains") && i + 8 < s.size() && IsRubySpace(s[i + 8])) {
        i += 8;
        t.kind = Tok::kComparison;
      } else if (c == '\'' || c == '"') {
        const size_t close = s.find(c, i + 1);
        if (close == std::string_view::npos) {
          return Error(t.pos, "the string starting here is not closed");
        }
        i = close + 1;
        t.kind = Tok::kString;
      } else if (IsDigit(c) || (c == '-' && i + 1 < s.size() && IsDigit(s[i + 1]))) {
        ++i;
        while (i < s.size() && IsDigit(s[i])) ++i;
        if (i + 1 < s.size() && s[i] == '.' && IsDigit(s[i + 1])) {
          ++i;
          while (i < s.size() && IsDigit(s[i])) ++i;
        }
        t.kind = Tok::kNumber;
      } else if (IsIdentStart(c)) {
        ++i;
        while (i < s.size() && (IsWordChar(s[i]) || s[i] == '-')) ++i;
        if (i < s.size() && s[i] == '?') ++i;
        t.kind = Tok::kId;
      } else if (starts("..")) {
        i += 2;
        t.kind = Tok::kDotDot;
      } else {
        switch (c) {
          case '|':
            t.kind = Tok::kPipe;
            break;
          case '.':
            t.kind = Tok::kDot;
            break;
          case ':':
            t.kind = Tok::kColon;
            break;
          case ',':
            t.kind = Tok::kComma;
            break;
          case '[':
            t.kind = Tok::kOpenSquare;
            break;
          case ']':
            t.kind = Tok::kCloseSquare;
            break;
          case '(':
            t.kind = Tok::kOpenRound;
            break;
          case ')':
            t.kind = Tok::kCloseRound;
            break;
          case '?':
            t.kind = Tok::kQuestion;
            break;
          case '-':
            t.kind = Tok::kDash;
            break;
          case '=':
            return Error(t.pos, "unexpected '=' (compare with '==')");
          default: {
            std::string ch;
            size_t n = 1;
            while (start + n < s.size() &&
                   (static_cast<unsigned char>(s[start + n]) & 0xC0) == 0x80) {
              ++n;
            }
            ch.assign(s.substr(start, n));
            return Error(t.pos, "unexpected character '" + ch + "'");
          }
        }
        ++i;
      }
      t.text = s.substr(start, i - start);
      toks_.push_back(t);
    }
    Token end;
    end.pos = base_ + static_cast<uint32_t>(s.size());
    toks_.push_back(end);
    return Status::Ok();
  }

  const Token& peek(size_t ahead = 0) const {
    return toks_[std::min(p_ + ahead, toks_.size() - 1)];
  }
  bool look(Tok kind, size_t ahead = 0) const { return peek(ahead).kind == kind; }
  bool at_end() const { return look(Tok::kEnd); }
  Token take() {
    Token t = peek();
    if (p_ < toks_.size() - 1) ++p_;
    return t;
  }
  bool consume(Tok kind) {
    if (!look(kind)) return false;
    take();
    return true;
  }
  bool id(std::string_view word) {
    if (look(Tok::kId) && peek().text == word) {
      take();
      return true;
    }
    return false;
  }
  size_t mark() const { return p_; }
  void reset(size_t m) { p_ = m; }

  Status Error(uint32_t pos, std::string message) const {
    return Status::Invalid(std::move(message), Position(source_, pos));
  }
  Status Unexpected(std::string_view wanted) const {
    return Error(peek().pos, "expected " + std::string(wanted) + ", found " + Describe(peek()));
  }
  Status ExpectEnd() const {
    if (at_end()) return Status::Ok();
    return Error(peek().pos, "unexpected " + Describe(peek()));
  }
  // The source text from token t to the current position, for forloop.name.
  std::string_view TextFrom(uint32_t pos) const {
    const uint32_t end =
        p_ > 0 ? toks_[p_ - 1].pos + static_cast<uint32_t>(toks_[p_ - 1].text.size()) : pos;
    return source_.substr(pos, end > pos ? end - pos : 0);
  }

 private:
  std::string_view source_;
  std::string_view text_;
  uint32_t base_;
  std::vector<Token> toks_;
  size_t p_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Token sources: the document's tokens, or the lines of a {% liquid %} tag.

struct RawToken {
  enum class Kind : uint8_t { kText, kTag, kVar };
  Kind kind = Kind::kText;
  uint32_t begin = 0, end = 0;
};

class Source {
 public:
  // Document mode.
  Source(const std::vector<RawToken>* tokens) : tokens_(tokens) {}  // NOLINT
  // {% liquid %} mode over `markup` at byte `base`: Ruby splits it on "\n" (trailing empty
  // lines dropped).
  Source(std::string_view markup, uint32_t base) : liquid_(true) {
    size_t start = 0;
    while (start < markup.size()) {
      size_t nl = markup.find('\n', start);
      if (nl == std::string_view::npos) nl = markup.size();
      lines_.emplace_back(markup.substr(start, nl - start), base + static_cast<uint32_t>(start));
      start = nl + 1;
    }
  }

  bool liquid() const { return liquid_; }
  const RawToken* NextToken() {
    if (tokens_ == nullptr || next_ >= tokens_->size()) return nullptr;
    return &(*tokens_)[next_++];
  }
  // The next line and its offset; false at the end.
  bool NextLine(std::string_view* line, uint32_t* pos) {
    if (next_ >= lines_.size()) return false;
    *line = lines_[next_].first;
    *pos = lines_[next_].second;
    ++next_;
    return true;
  }

 private:
  bool liquid_ = false;
  const std::vector<RawToken>* tokens_ = nullptr;
  size_t next_ = 0;
  std::vector<std::pair<std::string_view, uint32_t>> lines_;
};

// What ended a body: an unknown tag (an end tag, else, when, ...) or the end of the input.
struct Stop {
  bool eof = true;
  std::string_view name;
  std::string_view markup;
  uint32_t pos = 0;
  uint32_t markup_pos = 0;
};

// ---------------------------------------------------------------------------------------------

class Parser {
 public:
  explicit Parser(TemplateImpl* impl) : impl_(impl), src_(impl->source), filters_(*impl->filters) {}

  Status Run() {
    NUDGE_TRY(Tokenize());
    Source source(&tokens_);
    for (;;) {
      Stop stop;
      NUDGE_TRY(ParseBody(source, impl_->body, stop));
      if (stop.eof) break;
      if (stop.name == "else" || stop.name == "elsif" || stop.name == "when") {
        return Error(stop.pos, "unexpected '" + std::string(stop.name) + "' outside a block");
      }
      return UnknownTag(stop, "");
    }
    return Status::Ok();
  }

 private:
  Status Error(uint32_t pos, std::string message) const {
    return Status::Invalid(std::move(message), Position(src_, pos));
  }

  // Liquid::Tokenizer: TemplateParser = /(\{%.*?%\}|\{\{.*?\}\}?|\{%|\{\{)/m
  Status Tokenize() {
    const std::string_view s = src_;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t i = pos;
      while (true) {
        i = s.find('{', i);
        if (i == std::string_view::npos || i + 1 >= s.size()) {
          i = std::string_view::npos;
          break;
        }
        if (s[i + 1] == '{' || s[i + 1] == '%') break;
        ++i;
      }
      if (i == std::string_view::npos) {
        tokens_.push_back(
            {RawToken::Kind::kText, static_cast<uint32_t>(pos), static_cast<uint32_t>(s.size())});
        break;
      }
      if (i > pos) {
        tokens_.push_back(
            {RawToken::Kind::kText, static_cast<uint32_t>(pos), static_cast<uint32_t>(i)});
      }
      if (s[i + 1] == '%') {
        const size_t close = s.find("%}", i + 2);
        if (close == std::string_view::npos) {
          return Error(static_cast<uint32_t>(i), "'{%' is not closed with '%}'");
        }
        tokens_.push_back(
            {RawToken::Kind::kTag, static_cast<uint32_t>(i), static_cast<uint32_t>(close + 2)});
        pos = close + 2;
      } else {
        const size_t close = s.find('}', i + 2);
        if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != '}') {
          return Error(static_cast<uint32_t>(i),
                       "'{{' is not closed with '}}' (a '}' cannot appear inside {{ }})");
        }
        tokens_.push_back(
            {RawToken::Kind::kVar, static_cast<uint32_t>(i), static_cast<uint32_t>(close + 2)});
        pos = close + 2;
      }
    }
    return Status::Ok();
  }

  std::string_view Text(const RawToken& t) const { return src_.substr(t.begin, t.end - t.begin); }

  // BlockBody#whitespace_handler.
  void WhitespaceHandler(std::string_view token, Body& body) {
    if (token.size() > 2 && token[2] == '-') {
      if (!body.items.empty() && body.items.back().node == nullptr) {
        body.items.back().text = RStrip(body.items.back().text);
      }
    }
    trim_next_ = token.size() >= 3 && token[token.size() - 3] == '-';
  }

  bool KnownTag(std::string_view name) const {
    static constexpr std::string_view kTags[] = {
        "assign",    "break", "capture", "case",     "comment",   "continue", "cycle",
        "decrement", "echo",  "for",     "if",       "ifchanged", "include",  "increment",
        "#",         "raw",   "render",  "tablerow", "unless"};
    for (auto t : kTags) {
      if (t == name) return true;
    }
    return false;
  }

  // BlockBody#parse_for_document / #parse_for_liquid_tag.
  Status ParseBody(Source& source, Body& body, Stop& stop) {
    stop = Stop();
    if (source.liquid()) {
      std::string_view line;
      uint32_t line_pos = 0;
      while (source.NextLine(&line, &line_pos)) {
        if (IsBlankText(line)) continue;
        size_t i = 0;
        while (i < line.size() && IsRubySpace(line[i])) ++i;
        size_t j = i;
        if (j < line.size() && line[j] == '#') {
          ++j;
        } else {
          while (j < line.size() && IsWordChar(line[j])) ++j;
        }
        if (j == i) {
          stop.eof = false;
          stop.name = line.substr(i);
          stop.markup = line.substr(i);
          stop.pos = line_pos + static_cast<uint32_t>(i);
          stop.markup_pos = stop.pos;
          return Status::Ok();
        }
        std::string_view name = line.substr(i, j - i);
        size_t k = j;
        while (k < line.size() && IsRubySpace(line[k])) ++k;
        std::string_view markup = line.substr(k);
        const uint32_t pos = line_pos + static_cast<uint32_t>(i);
        const uint32_t markup_pos = line_pos + static_cast<uint32_t>(k);
        if (!KnownTag(name)) {
          stop.eof = false;
          stop.name = name;
          stop.markup = markup;
          stop.pos = pos;
          stop.markup_pos = markup_pos;
          return Status::Ok();
        }
        NUDGE_TRY(ParseTag(source, name, markup, pos, markup_pos, body));
      }
      return Status::Ok();
    }
    while (const RawToken* tok = source.NextToken()) {
      const std::string_view token = Text(*tok);
      if (token.empty()) continue;
      if (tok->kind == RawToken::Kind::kTag) {
        WhitespaceHandler(token, body);
        // FullToken = /\A\{%-?(\s*)(#|\w+)(\s*)(.*?)-?%\}\z/m
        size_t i = 2;
        if (i < token.size() && token[i] == '-') ++i;
        while (i < token.size() && IsRubySpace(token[i])) ++i;
        size_t j = i;
        if (j < token.size() && token[j] == '#') {
          ++j;
        } else {
          while (j < token.size() && IsWordChar(token[j])) ++j;
        }
        if (j == i) {
          return Error(tok->begin, "a tag needs a name: " + Quote(token));
        }
        const std::string_view name = token.substr(i, j - i);
        size_t k = j;
        size_t end = token.size() - 2;
        while (k < end && IsRubySpace(token[k])) ++k;
        if (end > k && token[end - 1] == '-') --end;
        const std::string_view markup = token.substr(k, end - k);
        const uint32_t markup_pos = tok->begin + static_cast<uint32_t>(k);
        const uint32_t tag_pos = tok->begin;
        if (name == "liquid") {
          Source lines(markup, markup_pos);
          Stop inner;
          NUDGE_TRY(ParseBody(lines, body, inner));
          if (!inner.eof) return UnknownTag(inner, "liquid");
          continue;
        }
        if (!KnownTag(name)) {
          stop.eof = false;
          stop.name = name;
          stop.markup = markup;
          stop.pos = tag_pos;
          stop.markup_pos = markup_pos;
          return Status::Ok();
        }
        NUDGE_TRY(ParseTag(source, name, markup, tag_pos, markup_pos, body));
      } else if (tok->kind == RawToken::Kind::kVar) {
        WhitespaceHandler(token, body);
        // ContentOfVariable = /\A\{\{-?(.*?)-?\}\}\z/m
        size_t b = 2, e = token.size() - 2;
        if (b < e && token[b] == '-') ++b;
        if (e > b && token[e - 1] == '-') --e;
        auto node = std::make_unique<OutputNode>();
        node->pos = tok->begin;
        NUDGE_TRY(ParseFiltered(token.substr(b, e - b), tok->begin + static_cast<uint32_t>(b),
                                node->value));
        body.items.push_back({{}, std::move(node)});
        body.blank = false;
      } else {
        std::string_view text = token;
        if (trim_next_) text = LStrip(text);
        trim_next_ = false;
        body.blank = body.blank && IsBlankText(text);
        body.items.push_back({text, nullptr});
      }
    }
    return Status::Ok();
  }

  // Block.raise_unknown_tag / Document#unknown_tag.
  Status UnknownTag(const Stop& stop, std::string_view block) {
    const std::string name(stop.name);
    if (block.empty()) {
      std::string msg = "unknown tag " + Quote(name);
      if (name.rfind("end", 0) == 0 && name.size() > 3) {
        msg += " (there is no open '" + name.substr(3) + "' to close)";
      } else {
        msg += Suggest(name, /*tags=*/true);
      }
      return Error(stop.pos, msg);
    }
    if (name == "else" || name == "elsif" || name == "when") {
      return Error(stop.pos, "'" + std::string(block) + "' does not take '" + name + "'");
    }
    if (name.rfind("end", 0) == 0) {
      return Error(stop.pos, Quote(name) + " does not close '" + std::string(block) +
                                 "' (expected 'end" + std::string(block) + "')");
    }
    return Error(stop.pos, "unknown tag " + Quote(name) + Suggest(name, true));
  }

  std::string Suggest(std::string_view name, bool tags) const {
    std::vector<std::string> names;
    if (tags) {
      for (auto t :
           {"assign",     "break",     "capture",     "case",         "comment",   "continue",
            "cycle",      "decrement", "echo",        "for",          "if",        "ifchanged",
            "include",    "increment", "raw",         "render",       "tablerow",  "unless",
            "liquid",     "endif",     "endfor",      "endcase",      "endunless", "endcapture",
            "endcomment", "endraw",    "endtablerow", "endifchanged", "else",      "elsif",
            "when"}) {
        names.emplace_back(t);
      }
    } else {
      names = filters_.Names();
    }
    std::string best;
    size_t best_d = 3;
    for (const auto& n : names) {
      const size_t d = EditDistance(name, n);
      if (d < best_d && d * 3 <= std::max<size_t>(n.size(), 3)) {
        best_d = d;
        best = n;
      }
    }
    if (best.empty()) return "";
    return " (did you mean " + best + "?)";
  }

  // Block#parse_body: parses until a tag this body does not know; the caller decides.
  Status ParseBlock(Source& source, Body& body, Stop& stop, std::string_view block,
                    uint32_t open_pos) {
    if (depth_ >= kMaxDepth) return Error(open_pos, "nesting too deep (more than 100 blocks)");
    ++depth_;
    Status st = ParseBody(source, body, stop);
    --depth_;
    NUDGE_TRY(st);
    if (stop.eof) return Error(open_pos, "'" + std::string(block) + "' is not closed");
    return Status::Ok();
  }

  bool IsEnd(const Stop& stop, std::string_view block) const {
    return stop.name.size() == block.size() + 3 && stop.name.substr(0, 3) == "end" &&
           stop.name.substr(3) == block;
  }

  Status ParseTag(Source& source, std::string_view name, std::string_view markup, uint32_t pos,
                  uint32_t mpos, Body& body) {
    std::unique_ptr<Node> node;
    if (name == "assign") {
      NUDGE_ASSIGN_OR_RETURN(node, ParseAssign(markup, mpos));
    } else if (name == "capture") {
      NUDGE_ASSIGN_OR_RETURN(node, ParseCapture(source, markup, pos, mpos));
    } else if (name == "if" || name == "unless") {
      NUDGE_ASSIGN_OR_RETURN(node, ParseIf(source, name, markup, pos, mpos));
    } else if (name == "case") {
      NUDGE_ASSIGN_OR_RETURN(node, ParseCase(source, markup, pos, mpos));
    } else if (name == "for") {
      NUDGE_ASSIGN_OR_RETURN(node, ParseFor(source, markup, pos, mpos));
    } else if (name == "tablerow") {
      NUDGE_ASSIGN_OR_RETURN(node, ParseTablerow(source, markup, pos, mpos));
    } else if (name == "cycle") {
      NUDGE_ASSIGN_OR_RETURN(node, ParseCycle(markup, mpos));
    } else if (name == "increment" || name == "decrement") {
      auto n = std::make_unique<CounterNode>();
      n->name = Strip(markup);
      n->decrement = name == "decrement";
      node = std::move(n);
    } else if (name == "raw") {
      NUDGE_ASSIGN_OR_RETURN(node, ParseRaw(source, markup, pos));
    } else if (name == "comment") {
      NUDGE_ASSIGN_OR_RETURN(node, ParseComment(source, pos));
    } else if (name == "#") {
      // InlineComment: every further line must start with '#'.
      for (size_t i = markup.find('\n'); i != std::string_view::npos;
           i = markup.find('\n', i + 1)) {
        size_t j = i + 1;
        while (j < markup.size() && IsRubySpace(markup[j])) ++j;
        if (j < markup.size() && markup[j] != '#') {
          return Error(mpos + static_cast<uint32_t>(j),
                       "each line of a '#' comment must start with '#'");
        }
      }
      node = std::make_unique<NoopNode>();
      node->blank = true;
    } else if (name == "echo") {
      auto n = std::make_unique<OutputNode>();
      NUDGE_TRY(ParseFiltered(markup, mpos, n->value));
      node = std::move(n);
    } else if (name == "break" || name == "continue") {
      auto n = std::make_unique<InterruptNode>();
      n->is_break = name == "break";
      node = std::move(n);
    } else if (name == "ifchanged") {
      auto n = std::make_unique<IfchangedNode>();
      Stop stop;
      for (;;) {
        NUDGE_TRY(ParseBlock(source, n->body, stop, "ifchanged", pos));
        if (IsEnd(stop, "ifchanged")) break;
        return UnknownTag(stop, "ifchanged");
      }
      n->blank = n->body.blank;
      node = std::move(n);
    } else if (name == "include" || name == "render") {
      NUDGE_ASSIGN_OR_RETURN(node, ParsePartial(name == "render", markup, mpos));
    } else {
      return Error(pos, "unknown tag " + Quote(name));
    }
    node->pos = pos;
    body.blank = body.blank && node->blank;
    body.items.push_back({{}, std::move(node)});
    return Status::Ok();
  }

  // ---- expressions

  Status ParseExpr(Markup& m, Expr& out, bool condition = false) {
    const Token t = m.peek();
    out.pos = t.pos;
    if (expr_depth_ >= kMaxDepth) return m.Error(t.pos, "expression nested too deep");
    ++expr_depth_;
    Status st = ParseExprInner(m, out, condition);
    --expr_depth_;
    return st;
  }

  Status ParseExprInner(Markup& m, Expr& out, bool condition) {
    const Token t = m.peek();
    switch (t.kind) {
      case Tok::kId: {
        m.take();
        if (!m.look(Tok::kOpenSquare) && !m.look(Tok::kDot)) {
          if (t.text == "nil" || t.text == "null") {
            out.kind = Expr::Kind::kLiteral;
            out.literal = Value();
            return Status::Ok();
          }
          if (t.text == "true" || t.text == "false") {
            out.kind = Expr::Kind::kLiteral;
            out.literal = Value::Bool(t.text == "true");
            return Status::Ok();
          }
          if (t.text == "empty" || t.text == "blank") {
            if (condition) {
              out.kind = t.text == "empty" ? Expr::Kind::kEmpty : Expr::Kind::kBlank;
            } else {
              out.kind = Expr::Kind::kLiteral;
              out.literal = Value::Borrowed("");
            }
            return Status::Ok();
          }
        }
        out.kind = Expr::Kind::kLookup;
        out.name = t.text;
        return ParseLookups(m, out);
      }
      case Tok::kOpenSquare: {
        m.take();
        out.kind = Expr::Kind::kLookup;
        out.name_expr = std::make_unique<Expr>();
        NUDGE_TRY(ParseExpr(m, *out.name_expr));
        if (!m.consume(Tok::kCloseSquare)) return m.Unexpected("']'");
        return ParseLookups(m, out);
      }
      case Tok::kString:
        m.take();
        out.kind = Expr::Kind::kLiteral;
        out.literal = Value::Borrowed(t.text.substr(1, t.text.size() - 2));
        return Status::Ok();
      case Tok::kNumber: {
        m.take();
        out.kind = Expr::Kind::kLiteral;
        if (t.text.find('.') == std::string_view::npos) {
          int64_t v = 0;
          auto r = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
          if (r.ec != std::errc())
            return m.Error(t.pos, "the number " + Quote(t.text) + " is too large");
          out.literal = Value::Int(v);
        } else {
          out.literal = Value::Float(std::strtod(std::string(t.text).c_str(), nullptr));
        }
        return Status::Ok();
      }
      case Tok::kOpenRound: {
        m.take();
        Expr lo, hi;
        NUDGE_TRY(ParseExpr(m, lo));
        if (!m.consume(Tok::kDotDot)) return m.Unexpected("'..'");
        NUDGE_TRY(ParseExpr(m, hi));
        if (!m.consume(Tok::kCloseRound)) return m.Unexpected("')'");
        if (lo.kind == Expr::Kind::kLiteral && hi.kind == Expr::Kind::kLiteral) {
          auto to_i = [&](const Value& v, int64_t* out_i) -> bool {
            switch (v.kind()) {
              case ValueKind::kInt:
                *out_i = v.AsInt();
                return true;
              case ValueKind::kFloat:
                if (!(v.AsFloat() < 9.2e18 && v.AsFloat() > -9.2e18)) return false;
                *out_i = static_cast<int64_t>(v.AsFloat());
                return true;
              case ValueKind::kString:
                *out_i = StringToI(v.AsString());
                return true;
              case ValueKind::kNil:
                *out_i = 0;
                return true;
              default:
                return false;
            }
          };
          int64_t a = 0, b = 0;
          if (!to_i(lo.literal, &a) || !to_i(hi.literal, &b)) {
            return m.Error(t.pos, "a range needs numbers at both ends");
          }
          auto rep = std::make_unique<RangeRep>();
          rep->lo = a;
          rep->hi = b;
          out.kind = Expr::Kind::kLiteral;
          out.literal = ValueAccess::Range(rep.get());
          impl_->ranges.push_back(std::move(rep));
          return Status::Ok();
        }
        out.kind = Expr::Kind::kRange;
        out.lo = std::make_unique<Expr>(std::move(lo));
        out.hi = std::make_unique<Expr>(std::move(hi));
        return Status::Ok();
      }
      default:
        return m.Unexpected("a value");
    }
  }

  Status ParseLookups(Markup& m, Expr& out) {
    for (;;) {
      if (m.consume(Tok::kOpenSquare)) {
        Expr::Part part;
        Expr key;
        NUDGE_TRY(ParseExpr(m, key));
        if (!m.consume(Tok::kCloseSquare)) return m.Unexpected("']'");
        if (key.kind == Expr::Kind::kLiteral) {
          part.key = key.literal;
        } else {
          part.dyn = std::make_unique<Expr>(std::move(key));
        }
        out.parts.push_back(std::move(part));
      } else if (m.look(Tok::kDot)) {
        m.take();
        const Token t = m.peek();
        if (t.kind != Tok::kId && t.kind != Tok::kNumber) return m.Unexpected("a name after '.'");
        m.take();
        Expr::Part part;
        part.key = Value::Borrowed(t.text);
        part.command = t.text == "size" || t.text == "first" || t.text == "last";
        out.parts.push_back(std::move(part));
      } else {
        return Status::Ok();
      }
    }
  }

  // Liquid::Variable#strict_parse: expr (| filter (: args)?)*
  Status ParseFiltered(std::string_view markup, uint32_t base, Filtered& out) {
    Markup m(src_, markup, base);
    NUDGE_TRY(m.Lex());
    if (m.at_end()) return Status::Ok();
    out.has_expr = true;
    NUDGE_TRY(ParseExpr(m, out.expr));
    NUDGE_TRY(ParseFilters(m, out));
    return m.ExpectEnd();
  }

  Status ParseFilters(Markup& m, Filtered& out) {
    while (m.consume(Tok::kPipe)) {
      const Token name = m.peek();
      if (name.kind != Tok::kId) return m.Unexpected("a filter name after '|'");
      m.take();
      FilterApp app;
      app.pos = name.pos;
      if (m.consume(Tok::kColon)) {
        do {
          if (m.look(Tok::kId) && m.look(Tok::kColon, 1)) {
            const Token key = m.take();
            m.take();
            Expr e;
            NUDGE_TRY(ParseExpr(m, e));
            auto it = std::find_if(app.kwargs.begin(), app.kwargs.end(),
                                   [&](const auto& kv) { return kv.first == key.text; });
            if (it != app.kwargs.end()) {
              it->second = std::move(e);
            } else {
              app.kwargs.emplace_back(key.text, std::move(e));
            }
          } else {
            Expr e;
            NUDGE_TRY(ParseExpr(m, e));
            app.args.push_back(std::move(e));
          }
        } while (m.consume(Tok::kComma));
      }
      app.filter = filters_.Find(name.text);
      if (comment_depth_ == 0) {
        if (app.filter == nullptr) {
          return m.Error(name.pos,
                         "unknown filter " + Quote(name.text) + Suggest(name.text, false));
        }
        const int n = static_cast<int>(app.args.size()) + (app.kwargs.empty() ? 0 : 1);
        if (n < app.filter->min_args || n > app.filter->max_args) {
          std::string want;
          if (app.filter->min_args == app.filter->max_args) {
            want = std::to_string(app.filter->min_args);
          } else {
            want = std::to_string(app.filter->min_args) + " to " +
                   std::to_string(app.filter->max_args);
          }
          return m.Error(name.pos, "filter " + Quote(name.text) + " takes " + want +
                                       (app.filter->max_args == 1 && app.filter->min_args == 1
                                            ? " argument"
                                            : " arguments") +
                                       ", " + std::to_string(n) + " given");
        }
        if (app.filter->check) {
          std::vector<std::optional<Value>> literals;
          for (const Expr& arg : app.args) {
            literals.push_back(arg.kind == Expr::Kind::kLiteral ? std::optional<Value>(arg.literal)
                                                                : std::nullopt);
          }
          Status checked = app.filter->check(literals);
          if (!checked.ok())
            return m.Error(name.pos, "filter " + Quote(name.text) + ": " + checked.message());
        }
      }
      out.filters.push_back(std::move(app));
    }
    return Status::Ok();
  }

  // ---- tags

  Result<std::unique_ptr<Node>> ParseAssign(std::string_view markup, uint32_t mpos) {
    size_t i = 0;
    while (i < markup.size() && IsRubySpace(markup[i])) ++i;
    const size_t start = i;
    while (i < markup.size() && (IsWordChar(markup[i]) || markup[i] == '-')) ++i;
    if (i == start)
      return Err(Error(mpos, "assign needs a variable name: {% assign name = value %}"));
    auto n = std::make_unique<AssignNode>();
    n->to = markup.substr(start, i - start);
    while (i < markup.size() && IsRubySpace(markup[i])) ++i;
    if (i >= markup.size() || markup[i] != '=') {
      return Err(
          Error(mpos + static_cast<uint32_t>(i), "assign needs '=': {% assign name = value %}"));
    }
    ++i;
    NUDGE_TRY(ParseFiltered(markup.substr(i), mpos + static_cast<uint32_t>(i), n->from));
    if (!n->from.has_expr) {
      return Err(Error(mpos + static_cast<uint32_t>(i), "assign needs a value after '='"));
    }
    n->blank = true;
    return std::unique_ptr<Node>(std::move(n));
  }

  Result<std::unique_ptr<Node>> ParseCapture(Source& source, std::string_view markup, uint32_t pos,
                                             uint32_t mpos) {
    std::string_view name = Strip(markup);
    if (name.size() >= 2 && (name[0] == '\'' || name[0] == '"') && name.back() == name[0]) {
      name = name.substr(1, name.size() - 2);
    }
    bool ok = !name.empty();
    for (char c : name) ok = ok && (IsWordChar(c) || c == '-');
    if (!ok) return Err(Error(mpos, "capture needs a variable name: {% capture name %}"));
    auto n = std::make_unique<CaptureNode>();
    n->to = name;
    Stop stop;
    NUDGE_TRY(ParseBlock(source, n->body, stop, "capture", pos));
    if (!IsEnd(stop, "capture")) return Err(UnknownTag(stop, "capture"));
    n->blank = true;
    return std::unique_ptr<Node>(std::move(n));
  }

  // If#strict_parse: comparisons joined by and/or.
  Result<std::unique_ptr<Condition>> ParseCondition(std::string_view markup, uint32_t mpos,
                                                    std::string_view tag) {
    Markup m(src_, markup, mpos);
    NUDGE_TRY(m.Lex());
    if (m.at_end()) return Err(Error(mpos, "'" + std::string(tag) + "' needs a condition"));
    std::unique_ptr<Condition> first;
    Condition* last = nullptr;
    for (;;) {
      auto c = std::make_unique<Condition>();
      NUDGE_TRY(ParseExpr(m, c->left, /*condition=*/true));
      if (m.look(Tok::kComparison)) {
        const Token op = m.take();
        if (op.text == "==") {
          c->op = CmpOp::kEq;
        } else if (op.text == "!=" || op.text == "<>") {
          c->op = CmpOp::kNe;
        } else if (op.text == "<") {
          c->op = CmpOp::kLt;
        } else if (op.text == ">") {
          c->op = CmpOp::kGt;
        } else if (op.text == "<=") {
          c->op = CmpOp::kLe;
        } else if (op.text == ">=") {
          c->op = CmpOp::kGe;
        } else {
          c->op = CmpOp::kContains;
        }
        NUDGE_TRY(ParseExpr(m, c->right, /*condition=*/true));
      }
      Condition* raw = c.get();
      if (last == nullptr) {
        first = std::move(c);
      } else {
        last->child = std::move(c);
      }
      last = raw;
      if (m.id("and")) {
        last->rel = Condition::Rel::kAnd;
      } else if (m.id("or")) {
        last->rel = Condition::Rel::kOr;
      } else {
        break;
      }
    }
    if (!m.at_end()) {
      if (m.peek().text == "=") {
        return Err(m.Error(m.peek().pos, "unexpected '=' (compare with '==')"));
      }
      return Err(m.Error(m.peek().pos, "unexpected " + Describe(m.peek()) +
                                           " (expected 'and', 'or' or the end of the condition)"));
    }
    return first;
  }

  Result<std::unique_ptr<Node>> ParseIf(Source& source, std::string_view tag,
                                        std::string_view markup, uint32_t pos, uint32_t mpos) {
    auto n = std::make_unique<IfNode>();
    n->unless = tag == "unless";
    IfNode::Branch first;
    NUDGE_ASSIGN_OR_RETURN(first.cond, ParseCondition(markup, mpos, tag));
    n->branches.push_back(std::move(first));
    bool blank = true;
    for (;;) {
      Stop stop;
      NUDGE_TRY(ParseBlock(source, n->branches.back().body, stop, tag, pos));
      blank = blank && n->branches.back().body.blank;
      if (IsEnd(stop, tag)) break;
      if (stop.name == "elsif") {
        IfNode::Branch b;
        NUDGE_ASSIGN_OR_RETURN(b.cond, ParseCondition(stop.markup, stop.markup_pos, "elsif"));
        n->branches.push_back(std::move(b));
      } else if (stop.name == "else") {
        n->branches.push_back(IfNode::Branch());
      } else {
        return Err(UnknownTag(stop, tag));
      }
    }
    n->blank = blank;
    if (blank) {
      for (auto& b : n->branches) b.body.RemoveBlankStrings();
    }
    return std::unique_ptr<Node>(std::move(n));
  }

  Result<std::unique_ptr<Node>> ParseCase(Source& source, std::string_view markup, uint32_t pos,
                                          uint32_t mpos) {
    auto n = std::make_unique<CaseNode>();
    {
      Markup m(src_, markup, mpos);
      NUDGE_TRY(m.Lex());
      if (m.at_end()) return Err(Error(mpos, "'case' needs a value: {% case value %}"));
      NUDGE_TRY(ParseExpr(m, n->left));
      NUDGE_TRY(m.ExpectEnd());
    }
    Body case_body;  // text before the first `when`: parsed, never rendered
    Body* body = &case_body;
    bool blank = true;
    for (;;) {
      Stop stop;
      NUDGE_TRY(ParseBlock(source, *body, stop, "case", pos));
      blank = blank && body->blank;
      if (IsEnd(stop, "case")) break;
      if (stop.name == "when") {
        auto b = std::make_unique<Body>();
        Markup m(src_, stop.markup, stop.markup_pos);
        NUDGE_TRY(m.Lex());
        if (m.at_end()) return Err(Error(stop.pos, "'when' needs a value"));
        for (;;) {
          CaseNode::When w;
          NUDGE_TRY(ParseExpr(m, w.value, /*condition=*/true));
          w.body = b.get();
          n->whens.push_back(std::move(w));
          if (m.consume(Tok::kComma) || m.id("or")) continue;
          NUDGE_TRY(m.ExpectEnd());
          break;
        }
        body = b.get();
        n->bodies.push_back(std::move(b));
      } else if (stop.name == "else") {
        if (!IsBlankText(stop.markup)) {
          return Err(Error(stop.markup_pos, "'else' in 'case' takes nothing"));
        }
        auto b = std::make_unique<Body>();
        CaseNode::When w;
        w.is_else = true;
        w.body = b.get();
        n->whens.push_back(std::move(w));
        body = b.get();
        n->bodies.push_back(std::move(b));
      } else {
        return Err(UnknownTag(stop, "case"));
      }
    }
    n->blank = blank;
    if (blank) {
      for (auto& b : n->bodies) b->RemoveBlankStrings();
    }
    return std::unique_ptr<Node>(std::move(n));
  }

  Result<std::unique_ptr<Node>> ParseFor(Source& source, std::string_view markup, uint32_t pos,
                                         uint32_t mpos) {
    auto n = std::make_unique<ForNode>();
    Markup m(src_, markup, mpos);
    NUDGE_TRY(m.Lex());
    if (!m.look(Tok::kId)) return Err(m.Unexpected("a variable name: {% for item in items %}"));
    n->var = m.take().text;
    if (!m.id("in")) return Err(m.Unexpected("'in': {% for item in items %}"));
    const uint32_t cpos = m.peek().pos;
    NUDGE_TRY(ParseExpr(m, n->collection));
    n->name = std::string(n->var) + "-" + std::string(m.TextFrom(cpos));
    n->reversed = m.id("reversed");
    NUDGE_TRY(ParseLoopAttributes(m, &n->limit, &n->offset, nullptr, &n->offset_continue, "for"));
    Stop stop;
    NUDGE_TRY(ParseBlock(source, n->body, stop, "for", pos));
    bool blank = n->body.blank;
    if (stop.name == "else") {
      n->else_body = std::make_unique<Body>();
      NUDGE_TRY(ParseBlock(source, *n->else_body, stop, "for", pos));
      blank = blank && n->else_body->blank;
    }
    if (!IsEnd(stop, "for")) return Err(UnknownTag(stop, "for"));
    n->blank = blank;
    if (blank) {
      n->body.RemoveBlankStrings();
      if (n->else_body) n->else_body->RemoveBlankStrings();
    }
    return std::unique_ptr<Node>(std::move(n));
  }

  Status ParseLoopAttributes(Markup& m, std::unique_ptr<Expr>* limit, std::unique_ptr<Expr>* offset,
                             std::unique_ptr<Expr>* cols, bool* offset_continue,
                             std::string_view tag) {
    for (;;) {
      m.consume(Tok::kComma);
      if (m.at_end()) return Status::Ok();
      if (!(m.look(Tok::kId) && m.look(Tok::kColon, 1))) {
        if (m.look(Tok::kId) && m.peek().text == "reversed") {
          return m.Error(m.peek().pos, "'reversed' must come right after the collection");
        }
        return m.Unexpected("an attribute such as 'limit: 5'");
      }
      const Token key = m.take();
      m.take();
      auto e = std::make_unique<Expr>();
      if (key.text == "offset" && offset_continue != nullptr && m.look(Tok::kId) &&
          m.peek().text == "continue" && !m.look(Tok::kDot, 1) && !m.look(Tok::kOpenSquare, 1)) {
        m.take();
        *offset_continue = true;
        offset->reset();
        continue;
      }
      NUDGE_TRY(ParseExpr(m, *e));
      if (key.text == "limit") {
        *limit = std::move(e);
      } else if (key.text == "offset") {
        *offset = std::move(e);
        if (offset_continue != nullptr) *offset_continue = false;
      } else if (key.text == "cols" && cols != nullptr) {
        *cols = std::move(e);
      } else if (cols == nullptr) {
        return m.Error(key.pos, "'" + std::string(tag) +
                                    "' takes the attributes limit and offset, not " +
                                    Quote(key.text));
      }
    }
  }

  Result<std::unique_ptr<Node>> ParseTablerow(Source& source, std::string_view markup, uint32_t pos,
                                              uint32_t mpos) {
    auto n = std::make_unique<TablerowNode>();
    Markup m(src_, markup, mpos);
    NUDGE_TRY(m.Lex());
    if (!m.look(Tok::kId))
      return Err(m.Unexpected("a variable name: {% tablerow item in items %}"));
    n->var = m.take().text;
    if (!m.id("in")) return Err(m.Unexpected("'in': {% tablerow item in items %}"));
    NUDGE_TRY(ParseExpr(m, n->collection));
    NUDGE_TRY(ParseLoopAttributes(m, &n->limit, &n->offset, &n->cols, nullptr, "tablerow"));
    Stop stop;
    NUDGE_TRY(ParseBlock(source, n->body, stop, "tablerow", pos));
    if (!IsEnd(stop, "tablerow")) return Err(UnknownTag(stop, "tablerow"));
    n->blank = n->body.blank;
    return std::unique_ptr<Node>(std::move(n));
  }

  Result<std::unique_ptr<Node>> ParseCycle(std::string_view markup, uint32_t mpos) {
    auto n = std::make_unique<CycleNode>();
    Markup m(src_, markup, mpos);
    NUDGE_TRY(m.Lex());
    if (m.at_end()) return Err(Error(mpos, "'cycle' needs values: {% cycle 'a', 'b' %}"));
    Expr first;
    NUDGE_TRY(ParseExpr(m, first));
    if (m.consume(Tok::kColon)) {
      n->group = std::make_unique<Expr>(std::move(first));
      Expr v;
      NUDGE_TRY(ParseExpr(m, v));
      n->values.push_back(std::move(v));
    } else {
      n->values.push_back(std::move(first));
    }
    while (m.consume(Tok::kComma)) {
      Expr v;
      NUDGE_TRY(ParseExpr(m, v));
      n->values.push_back(std::move(v));
    }
    NUDGE_TRY(m.ExpectEnd());
    // Cycle#variables_from_string drops nil literals (Array#compact).
    n->values.erase(std::remove_if(n->values.begin(), n->values.end(),
                                   [](const Expr& e) {
                                     return e.kind == Expr::Kind::kLiteral && e.literal.is_nil();
                                   }),
                    n->values.end());
    if (n->values.empty()) return Err(Error(mpos, "'cycle' needs values other than nil"));
    if (!n->group) {
      // Ruby keys unnamed cycles by the inspected list of values; a variable's inspection
      // names its object, so a cycle with variables shares its state with no other tag.
      bool literal = true;
      std::string key = "s[";
      for (size_t i = 0; i < n->values.size(); ++i) {
        if (n->values[i].kind != Expr::Kind::kLiteral) literal = false;
        if (i > 0) key += ", ";
        AppendInspect(key, n->values[i].literal);
      }
      key += ']';
      n->key = literal ? key : "u" + std::to_string(mpos);
    }
    return std::unique_ptr<Node>(std::move(n));
  }

  Result<std::unique_ptr<Node>> ParseRaw(Source& source, std::string_view markup, uint32_t pos) {
    if (!IsBlankText(markup)) return Err(Error(pos, "'raw' takes nothing: {% raw %}"));
    auto n = std::make_unique<RawNode>();
    if (source.liquid()) return Err(Error(pos, "'raw' is not closed"));
    // Raw#parse: FullTokenPossiblyInvalid = /\A(.*)\{%\s*(\w+)\s*(.*)?%\}\z/m
    while (const RawToken* tok = source.NextToken()) {
      const std::string_view token = Text(*tok);
      if (tok->kind == RawToken::Kind::kTag) {
        // The last "{%" that is followed by a name.
        for (size_t at = token.rfind("{%"); at != std::string_view::npos;
             at = at == 0 ? std::string_view::npos : token.rfind("{%", at - 1)) {
          size_t i = at + 2;
          while (i < token.size() && IsRubySpace(token[i])) ++i;
          size_t j = i;
          while (j < token.size() && IsWordChar(token[j])) ++j;
          if (j == i) continue;
          if (token.substr(i, j - i) == "endraw") {
            n->text.append(token.substr(0, at));
            n->blank = n->text.empty();
            return std::unique_ptr<Node>(std::move(n));
          }
          break;
        }
      }
      n->text.append(token);
    }
    return Err(Error(pos, "'raw' is not closed"));
  }

  Result<std::unique_ptr<Node>> ParseComment(Source& source, uint32_t pos) {
    Body body;
    ++comment_depth_;
    for (;;) {
      Stop stop;
      Status st = ParseBlock(source, body, stop, "comment", pos);
      if (!st.ok()) {
        --comment_depth_;
        return Err(st);
      }
      if (IsEnd(stop, "comment")) break;
      // Comment#unknown_tag ignores every other tag.
    }
    --comment_depth_;
    auto n = std::make_unique<NoopNode>();
    n->blank = true;
    return std::unique_ptr<Node>(std::move(n));
  }

  Result<std::unique_ptr<Node>> ParsePartial(bool isolated, std::string_view markup,
                                             uint32_t mpos) {
    auto n = std::make_unique<PartialNode>();
    n->isolated = isolated;
    Markup m(src_, markup, mpos);
    NUDGE_TRY(m.Lex());
    const std::string_view tag = isolated ? "render" : "include";
    if (m.at_end()) return Err(Error(mpos, "'" + std::string(tag) + "' needs a template name"));
    if (isolated && !m.look(Tok::kString)) {
      return Err(m.Error(m.peek().pos, "'render' needs the template name as a quoted string"));
    }
    NUDGE_TRY(ParseExpr(m, n->template_name));
    if (n->template_name.kind == Expr::Kind::kLiteral && n->template_name.literal.is_string()) {
      std::string name(n->template_name.literal.AsString());
      if (std::find(impl_->partial_names.begin(), impl_->partial_names.end(), name) ==
          impl_->partial_names.end()) {
        impl_->partial_names.push_back(std::move(name));
      }
    }
    if (m.look(Tok::kId) && (m.peek().text == "with" || m.peek().text == "for") &&
        !m.look(Tok::kColon, 1)) {
      n->is_for = m.take().text == "for";
      n->variable = std::make_unique<Expr>();
      NUDGE_TRY(ParseExpr(m, *n->variable));
    }
    if (m.look(Tok::kId) && m.peek().text == "as" && !m.look(Tok::kColon, 1)) {
      m.take();
      if (!m.look(Tok::kId)) return Err(m.Unexpected("a name after 'as'"));
      n->alias = m.take().text;
    }
    for (;;) {
      m.consume(Tok::kComma);
      if (m.at_end()) break;
      if (!(m.look(Tok::kId) && m.look(Tok::kColon, 1))) {
        return Err(m.Unexpected("a parameter such as 'name: value'"));
      }
      const Token key = m.take();
      m.take();
      Expr e;
      NUDGE_TRY(ParseExpr(m, e));
      auto it = std::find_if(n->attributes.begin(), n->attributes.end(),
                             [&](const auto& kv) { return kv.first == key.text; });
      if (it != n->attributes.end()) {
        it->second = std::move(e);
      } else {
        n->attributes.emplace_back(key.text, std::move(e));
      }
    }
    return std::unique_ptr<Node>(std::move(n));
  }

  TemplateImpl* impl_;
  std::string_view src_;
  const FilterRegistry& filters_;
  std::vector<RawToken> tokens_;
  bool trim_next_ = false;  // ParseContext#trim_whitespace
  int depth_ = 0;
  int expr_depth_ = 0;
  int comment_depth_ = 0;
};

}  // namespace

void Body::RemoveBlankStrings() {
  items.erase(
      std::remove_if(items.begin(), items.end(), [](const Item& i) { return i.node == nullptr; }),
      items.end());
}

std::string Position(std::string_view source, size_t offset) {
  int line = 1, column = 1;
  for (size_t i = 0; i < offset && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(source[i]) & 0xC0) != 0x80) {
      ++column;
    }
  }
  return std::to_string(line) + ":" + std::to_string(column);
}

Status Parse(TemplateImpl* impl) { return Parser(impl).Run(); }

}  // namespace nudge::content::internal
