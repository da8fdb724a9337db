// CsvReader: a streaming RFC 4180 CSV reader with bounded memory, for contact lists exported from
// spreadsheets, Mailchimp, HubSpot and the like.
//
// Records come one at a time with the 1-based line on which each starts. Fields may be quoted;
// a quoted field may hold delimiters, doubled quotes ("") and line breaks. Lines end with CRLF,
// LF or a lone CR. A UTF-8 byte order mark is skipped. The delimiter (comma, semicolon or tab)
// is detected from the first line unless given. Input in latin1 or windows-1252 is transcoded
// to UTF-8 on the way in.
//
// A malformed record does not stop the stream: Next() returns it with `error` set (what, and
// `where` = "line:column") and the next call resumes at the following record, so an importer
// can reject that row and go on. Per-record errors: invalid UTF-8, a NUL byte, a character
// after a closing quote, a field, record or field count past the limits, and a quote still
// open at the end of the input (reported at the opening quote). Only a failing source or a
// file that is not 8-bit text at all (a UTF-16/UTF-32 byte order mark) stops the stream.
//
// Memory: one read chunk (64 KiB, times three when transcoding) plus the current record, which
// is capped by CsvOptions. Ownership: the reader owns its source callable; sources made by
// StreamSource/StringSource borrow their stream or text, which must outlive the reader.
// Thread-compatible: one reader per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace nudge::core {

enum class CsvEncoding { kUtf8, kLatin1, kWindows1252 };

// "utf-8" (or "utf8"), "latin1" (or "latin-1", "iso-8859-1"), "windows-1252" (or "cp1252"),
// case-insensitive. kInvalidArgument names the accepted values.
Result<CsvEncoding> ParseCsvEncoding(std::string_view name);

struct CsvOptions {
  char delimiter = '\0';  // '\0': detected from the first line among ',', ';' and '\t'
  CsvEncoding encoding = CsvEncoding::kUtf8;
  size_t max_field_bytes = 1 << 20;
  size_t max_record_bytes = 4 << 20;  // the sum of a record's fields
  size_t max_fields = 4096;
  bool skip_blank_lines = true;  // an empty line yields no record (else one empty field)
};

struct CsvRecord {
  int64_t line = 0;  // 1-based line where the record starts
  std::vector<std::string> fields;
  // Not ok when the record is malformed: `where` is "line:column" (1-based, columns counted
  // in characters) of the first problem. `fields` then hold what was read, possibly cut short.
  Status error;
};

// Reads up to `capacity` bytes into `buffer`; returns the count, 0 at the end of the input, or
// an error (which stops the reader).
using CsvSource = std::function<Result<size_t>(char* buffer, size_t capacity)>;

class CsvReader {
 public:
  explicit CsvReader(CsvSource source, CsvOptions options = {});

  // A source reading `in` (borrowed). A stream in a failed state (bad()) is a kInternal error.
  static CsvSource StreamSource(std::istream& in);
  // A source over `text` (borrowed), handing out at most `chunk` bytes per read (tests and the
  // fuzzer use small chunks to cross buffer boundaries everywhere).
  static CsvSource StringSource(std::string_view text, size_t chunk = 64 * 1024);

  // Reads the next record into `record`, reusing its storage. Returns false at the end of the
  // input. An error (a failing source, a UTF-16/32 file) is returned again by later calls.
  Result<bool> Next(CsvRecord& record);

  // The delimiter in use; after the first Next() it is the detected one.
  char delimiter() const { return options_.delimiter; }
  // True when the input began with a UTF-8 byte order mark.
  bool had_bom() const { return had_bom_; }
  // Bytes taken from the source so far (before transcoding), for progress reports.
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  enum class State { kFieldStart, kUnquoted, kQuoted, kQuoteInQuoted };

  Result<bool> Fill();  // appends a chunk to buf_; false at the end of the input
  Status Start();       // byte order mark and delimiter detection, before the first record
  void DetectDelimiter();
  void Fail(CsvRecord& record, std::string message, int64_t line, int64_t column);
  // Appends to the current field within the limits; `column` is that of data[0].
  void Append(CsvRecord& record, const char* data, size_t n, int64_t column);
  bool NewField(CsvRecord& record);
  void Utf8Byte(CsvRecord& record, unsigned char c);

  CsvSource source_;
  CsvOptions options_;
  std::string raw_;  // the last chunk read from the source
  std::string buf_;  // UTF-8 text not yet parsed starts at pos_
  size_t pos_ = 0;
  bool eof_ = false;
  bool started_ = false;      // Start() ran
  bool bom_checked_ = false;  // the first bytes were looked at
  bool had_bom_ = false;
  Status fatal_;
  uint64_t bytes_read_ = 0;

  // Where the parser is in the input.
  int64_t line_ = 1;
  int64_t column_ = 0;  // characters consumed on the current line
  bool after_cr_ = false;

  // UTF-8 validation across bytes (and chunks).
  int utf8_need_ = 0;
  unsigned char utf8_lo_ = 0x80, utf8_hi_ = 0xBF;
  unsigned char utf8_lead_ = 0;
  int64_t utf8_line_ = 0, utf8_column_ = 0;

  // Limits for the current record.
  size_t record_bytes_ = 0;
  bool dropping_ = false;     // past a limit: bytes of the current field are discarded
  bool record_full_ = false;  // past the record limit: no more fields either
};

// Appends one field, quoted when it holds the delimiter, a quote or a line break.
void AppendCsvField(std::string& out, std::string_view field, char delimiter = ',');
// Appends the fields joined by the delimiter and a CRLF.
void AppendCsvRecord(std::string& out, const std::vector<std::string>& fields,
                     char delimiter = ',');

}  // namespace nudge::core
