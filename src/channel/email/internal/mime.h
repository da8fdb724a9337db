// The encoders BuildMessage is made of, exposed for its unit tests. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace nudge::channel {

// Hard limit on a line (RFC 5322 §2.1.1), without the CRLF; and the length we fold at.
inline constexpr size_t kMaxLineLength = 998;
inline constexpr size_t kFoldAt = 78;

// Every line break (CRLF, LF, or a lone CR) as CRLF.
std::string NormalizeLineEndings(std::string_view text);

// Splits UTF-8 text into RFC 2047 encoded-words ("=?UTF-8?Q?...?=" or "=?UTF-8?B?...?="),
// whichever encoding is shorter overall, each at most 75 characters and the first at most
// `first_max`. Never splits a UTF-8 sequence between two words. The Q form only leaves
// letters, digits and !*+-/ literal, so the words are valid in a display name too.
std::vector<std::string> EncodedWords(std::string_view utf8, size_t first_max = 75);

// Appends "Name: " and the tokens separated by single spaces, folding (CRLF + the space)
// between tokens so lines stay within 78 characters when the tokens allow. An error when a
// single token cannot fit in 998 characters.
Status AppendFoldedTokens(std::string& out, std::string_view name,
                          const std::vector<std::string>& tokens);

// Appends "Name: value" for an ASCII unstructured value, folding only before whitespace the
// value already has, so unfolding restores it exactly.
Status AppendFoldedText(std::string& out, std::string_view name, std::string_view value);

// A display name as it appears before <address>: as is when it is only atext and spaces,
// a quoted-string when it is ASCII with specials, encoded-words otherwise.
std::vector<std::string> PhraseTokens(std::string_view name, size_t first_max);

// Quoted-printable (RFC 2045 §6.7) of CRLF-normalized text: lines of at most 76 characters,
// '=' and non-ASCII escaped, trailing whitespace escaped, "From " at a line start escaped.
std::string QuotedPrintable(std::string_view text);

// Base64 in lines of 76 characters, each ending in CRLF.
std::string Base64Lines(std::string_view data);

enum class BodyEncoding { k7Bit, kQuotedPrintable, kBase64 };
std::string_view EncodingName(BodyEncoding e);

// Chooses how to encode a CRLF-normalized body: 7bit when it is printable ASCII in lines of at
// most 998 characters, else the shorter of quoted-printable and base64.
BodyEncoding ChooseEncoding(std::string_view text);

// The body encoded as chosen, always ending in CRLF.
std::string EncodeBody(std::string_view text, BodyEncoding e);

// True when every byte is printable ASCII (0x20..0x7E) or a tab.
bool IsPrintableAscii(std::string_view s);

}  // namespace nudge::channel
