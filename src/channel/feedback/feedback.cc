#include "channel/feedback/feedback.h"

#include "channel/feedback/internal/text.h"
#include "core/json.h"

namespace nudge::channel {

using feedback_internal::IsDigit;
using feedback_internal::IsSpace;
using feedback_internal::Lower;
using feedback_internal::Trim;

std::string_view FeedbackKindName(Feedback::Kind kind) {
  switch (kind) {
    case Feedback::Kind::kHardBounce:
      return "hard_bounce";
    case Feedback::Kind::kSoftBounce:
      return "soft_bounce";
    case Feedback::Kind::kComplaint:
      return "complaint";
    case Feedback::Kind::kDelivered:
      return "delivered";
    case Feedback::Kind::kUnknown:
      return "unknown";
  }
  return "unknown";
}

std::string NormalizeRecipient(std::string_view text) {
  std::string_view t = Trim(text);
  const size_t open = t.rfind('<');
  if (open != std::string_view::npos) {
    t = t.substr(open + 1);
    const size_t close = t.find('>');
    if (close != std::string_view::npos) t = t.substr(0, close);
    t = Trim(t);
  }
  if (t.size() < 3 || t.size() > 254) return "";
  const size_t at = t.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == t.size()) return "";
  for (char c : t) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7F) return "";
    if (std::string_view("<>,;()\\\":").find(c) != std::string_view::npos) return "";
  }
  if (t.find('@') != at) return "";  // one '@' (quoted local parts are not accepted)
  if (!core::IsValidUtf8(t)) return "";
  std::string out(t);
  for (char& c : out) c = Lower(c);
  return out;
}

std::string NormalizeMessageId(std::string_view value) {
  std::string_view v = Trim(value);
  const size_t open = v.find('<');
  if (open != std::string_view::npos) {
    v = v.substr(open + 1);
    const size_t close = v.find('>');
    if (close != std::string_view::npos) v = v.substr(0, close);
  } else {
    size_t end = 0;
    while (end < v.size() && !IsSpace(v[end])) ++end;
    v = v.substr(0, end);
  }
  std::string id;
  for (char c : v) {
    if (IsSpace(c)) continue;  // a msg-id folded across lines
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) return "";
    id += c;
  }
  if (id.empty() || id.size() > 998 || !core::IsValidUtf8(id)) return "";
  return id;
}

namespace {

// An enhanced status code starting at text[i], or "" (see ExtractStatusCode).
std::string EnhancedAt(std::string_view text, size_t i) {
  if (i + 5 > text.size()) return "";  // class "." subject "." detail
  const char cls = text[i];
  if (cls != '2' && cls != '4' && cls != '5') return "";
  if (i > 0 && (IsDigit(text[i - 1]) || text[i - 1] == '.')) return "";
  if (text[i + 1] != '.' || text[i + 2] < '0' || text[i + 2] > '7' || text[i + 3] != '.') {
    return "";
  }
  size_t p = i + 4;
  while (p < text.size() && IsDigit(text[p])) ++p;
  const size_t digits = p - (i + 4);
  if (digits == 0 || digits > 3) return "";
  if (p + 1 < text.size() && text[p] == '.' && IsDigit(text[p + 1])) return "";
  return std::string(text.substr(i, p - i));
}

// A basic SMTP reply code starting at text[i] where one can stand, or "".
std::string BasicAt(std::string_view text, size_t i) {
  if (i + 3 > text.size()) return "";
  const char cls = text[i];
  if (cls != '4' && cls != '5') return "";
  if (!IsDigit(text[i + 1]) || !IsDigit(text[i + 2])) return "";
  if (i + 3 < text.size() && text[i + 3] != ' ' && text[i + 3] != '-' && text[i + 3] != '\r' &&
      text[i + 3] != '\n')
    return "";
  size_t k = i;
  while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\t')) --k;
  if (k > 0 && std::string_view("\n:;#(\"").find(text[k - 1]) == std::string_view::npos) {
    return "";
  }
  return std::string(1, cls) + ".0.0";
}

}  // namespace

std::string ExtractStatusCode(std::string_view text) {
  for (size_t i = 0; i + 5 <= text.size(); ++i) {
    std::string code = EnhancedAt(text, i);
    if (!code.empty()) return code;
  }
  for (size_t i = 0; i + 3 <= text.size(); ++i) {
    std::string code = BasicAt(text, i);
    if (!code.empty()) return code;
  }
  return "";
}

Feedback::Kind KindForStatus(std::string_view status) {
  if (status.size() < 5 || status[1] != '.') return Feedback::Kind::kUnknown;
  switch (status[0]) {
    case '5':
      if (status.substr(1) == ".2.2") return Feedback::Kind::kSoftBounce;
      return Feedback::Kind::kHardBounce;
    case '4':
      return Feedback::Kind::kSoftBounce;
    case '2':
      return Feedback::Kind::kDelivered;
    default:
      return Feedback::Kind::kUnknown;
  }
}

}  // namespace nudge::channel
