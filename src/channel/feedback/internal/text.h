// Small text helpers shared by the feedback parsers: ASCII case folding, trimming, line
// splitting, address scanning and making untrusted text safe to store. Pure functions over
// their arguments; thread-safe. Private to src/channel/feedback.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace nudge::channel::feedback_internal {

inline char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
inline bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string ToLower(std::string_view s);
std::string_view Trim(std::string_view s);
bool IEquals(std::string_view a, std::string_view b);
bool IStartsWith(std::string_view s, std::string_view prefix);
// Position of `needle` in `haystack` at or after `from`, ignoring ASCII case; npos if none.
size_t IFind(std::string_view haystack, std::string_view needle, size_t from = 0);
inline bool IContains(std::string_view haystack, std::string_view needle) {
  return IFind(haystack, needle) != std::string_view::npos;
}

// The lines of `text`, split at LF with a trailing CR removed (views into `text`).
std::vector<std::string_view> Lines(std::string_view text);

// Text from outside made safe to store and to put in JSON: invalid UTF-8 bytes become U+FFFD,
// control characters and runs of white space become one space, both ends are trimmed, and the
// result is cut at `max_bytes` on a character boundary.
std::string CleanText(std::string_view s, size_t max_bytes);

// Email addresses found in free text (bounce notices, address lists), normalized
// (NormalizeRecipient), in order of first appearance, without duplicates, at most `max`.
// Only addresses whose domain has a dot count, so that "user@localhost" in prose is not one.
std::vector<std::string> FindAddresses(std::string_view text, size_t max);

// The text of a typed report field without its type: "smtp; 550 5.1.1 ..." -> "550 5.1.1 ...",
// "dns; mx.example.com" -> "mx.example.com". A value with no short type prefix is returned
// trimmed.
std::string_view DropFieldType(std::string_view value);

// The host a Remote-MTA / Reporting-MTA field names, without its type, comments and a trailing
// root dot: "dns; mx.example.com. (192.0.2.1, the server for ...)" -> "mx.example.com".
std::string MtaName(std::string_view value);

// The status code a Status field holds ("5.1.1 (bad destination mailbox)" -> "5.1.1"), or ""
// when its first word is not an enhanced status code.
std::string StatusToken(std::string_view value);

}  // namespace nudge::channel::feedback_internal
