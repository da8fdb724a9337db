// A tolerant, bounded reader of MIME messages (RFC 5322 / RFC 2045-2049) that arrive from
// outside: bounces and complaint reports. It never fails: any bytes are some message, with
// whatever headers and parts could be recognised. What it handles: folded headers, lines
// ending in CRLF, LF or both mixed, multipart bodies (nested, with missing close delimiters,
// preambles and epilogues), message/rfc822 and message/global parts (the enclosed message is
// parsed as a child), base64 and quoted-printable transfer encodings, quoted and commented
// Content-Type parameters, and RFC 2047 encoded words (on request).
//
// Bounded: nesting deeper than `max_depth` or parts past `max_parts` are left unparsed (the
// part keeps its body) and `truncated` is set; header fields past `max_fields` per header
// block are dropped. Memory is a small multiple of the input. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nudge::channel {

struct MimeParseLimits {
  size_t max_depth = 12;    // multipart and message/* nesting
  size_t max_parts = 512;   // parts in the whole message
  size_t max_fields = 512;  // header fields per header block
};

struct MimeField {
  std::string name;   // as written
  std::string value;  // unfolded (each line break and the white space after it become one
                      // space), trimmed; encoded words are left as they are
};

// Parses the header block at the start of `text`: fields up to the first empty line, or up to
// the first line that is neither a field nor a continuation (that line starts the body). An
// mbox "From " line first is skipped. Appends at most `max_fields` fields to `fields` and
// returns the offset where the body starts (after the empty line).
size_t ParseMimeFields(std::string_view text, std::vector<MimeField>& fields,
                       size_t max_fields = 512);

// The value of the first field called `name` (case-insensitive), or "".
std::string_view FindField(const std::vector<MimeField>& fields, std::string_view name);

struct MimeNode {
  std::vector<MimeField> headers;
  std::string type = "text/plain";                          // lowercased media type of Content-Type
  std::vector<std::pair<std::string, std::string>> params;  // names lowercased, values unquoted
  // The body with its transfer encoding undone. Empty for a multipart and for a message/*
  // part whose enclosed message was parsed: their content is in `children`.
  std::string body;
  // The parts of a multipart; the one enclosed message of a parsed message/rfc822 part.
  std::vector<MimeNode> children;

  std::string_view Header(std::string_view name) const { return FindField(headers, name); }
  std::string_view Param(std::string_view name) const;  // "" when absent
  bool IsMultipart() const { return type.compare(0, 10, "multipart/") == 0; }
};

struct MimeTree {
  MimeNode root;
  bool truncated = false;  // a limit was reached; some parts were left unparsed
};

MimeTree ParseMimeTree(std::string_view message, const MimeParseLimits& limits = {});

// Splits a Content-Type value into the lowercased media type and its parameters. A value with
// no "type/subtype" yields "" as the type.
std::string ParseContentType(std::string_view value,
                             std::vector<std::pair<std::string, std::string>>& params);

// Transfer decodings. Both are lenient: characters outside the alphabet are skipped (base64),
// malformed escapes are kept literally (quoted-printable).
std::string DecodeBase64(std::string_view in);
std::string DecodeQuotedPrintable(std::string_view in);

// Decodes RFC 2047 encoded words ("=?UTF-8?Q?Undeliverable=3A?=") in a header value into
// UTF-8 (utf-8 and us-ascii as they are, iso-8859-1 and windows-1252 converted; other charsets
// are passed through). White space between adjacent encoded words is dropped.
std::string DecodeHeaderWords(std::string_view value);

}  // namespace nudge::channel
