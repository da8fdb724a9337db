#include "core/csv.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <istream>

namespace nudge::core {
namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr size_t kSniffBytes = 64 * 1024;  // the delimiter is guessed from at most this much

// windows-1252's 0x80..0x9F; the five bytes it leaves undefined map to the C1 controls, as the
// WHATWG Encoding Standard does.
constexpr char16_t kCp1252High[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

void AppendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string Where(int64_t line, int64_t column) {
  return std::to_string(line) + ":" + std::to_string(column);
}

std::string ByteHex(unsigned char c) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02X", c);
  return text;
}

}  // namespace

Result<CsvEncoding> ParseCsvEncoding(std::string_view name) {
  std::string key;
  for (char c : name) {
    if (c == '-' || c == '_') continue;
    key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (key == "utf8") return CsvEncoding::kUtf8;
  if (key == "latin1" || key == "iso88591") return CsvEncoding::kLatin1;
  if (key == "windows1252" || key == "cp1252") return CsvEncoding::kWindows1252;
  return Err(Status::Invalid(
      "unknown encoding '" + std::string(name) + "' (use utf-8, latin1 or windows-1252)",
      "--encoding"));
}

CsvReader::CsvReader(CsvSource source, CsvOptions options)
    : source_(std::move(source)), options_(options) {}

CsvSource CsvReader::StreamSource(std::istream& in) {
  return [&in](char* buffer, size_t capacity) -> Result<size_t> {
    in.read(buffer, static_cast<std::streamsize>(capacity));
    if (in.bad()) return Err(Status::Internal("cannot read the input"));
    return static_cast<size_t>(in.gcount());
  };
}

CsvSource CsvReader::StringSource(std::string_view text, size_t chunk) {
  if (chunk == 0) chunk = 1;
  return
      [text, chunk, offset = size_t{0}](char* buffer, size_t capacity) mutable -> Result<size_t> {
        const size_t n = std::min({capacity, chunk, text.size() - offset});
        std::copy_n(text.data() + offset, n, buffer);
        offset += n;
        return n;
      };
}

Result<bool> CsvReader::Fill() {
  if (eof_) return false;
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  for (;;) {
    raw_.resize(kChunk);
    NUDGE_ASSIGN_OR_RETURN(const size_t n, source_(raw_.data(), raw_.size()));
    if (n > kChunk) return Err(Status::Internal("the CSV source returned more than it was asked"));
    raw_.resize(n);
    if (n == 0) {
      eof_ = true;
      return false;
    }
    bytes_read_ += n;
    if (!bom_checked_) {
      // The first bytes decide about byte order marks; gather enough to see one.
      while (raw_.size() < 4) {
        const size_t have = raw_.size();
        raw_.resize(have + kChunk);
        NUDGE_ASSIGN_OR_RETURN(const size_t more, source_(raw_.data() + have, kChunk));
        if (more > kChunk)
          return Err(Status::Internal("the CSV source returned more than it was asked"));
        raw_.resize(have + more);
        bytes_read_ += more;
        if (more == 0) {
          eof_ = true;
          break;
        }
      }
      auto starts = [&](std::string_view prefix) { return raw_.starts_with(prefix); };
      if (starts(std::string_view("\xFF\xFE\x00\x00", 4)) ||
          starts(std::string_view("\x00\x00\xFE\xFF", 4)))
        return Err(Status::Invalid(
            "the file is UTF-32 (it starts with a UTF-32 byte order mark); save it as UTF-8 CSV",
            "1:1"));
      if (starts("\xFF\xFE") || starts("\xFE\xFF"))
        return Err(Status::Invalid(
            "the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8 CSV",
            "1:1"));
      if (starts("\xEF\xBB\xBF")) {
        if (options_.encoding != CsvEncoding::kUtf8)
          return Err(
              Status::Invalid("the file starts with a UTF-8 byte order mark, so it is UTF-8, not "
                              "the latin1/windows-1252 the encoding option says",
                              "1:1"));
        had_bom_ = true;
        raw_.erase(0, 3);
      }
      bom_checked_ = true;
      if (raw_.empty()) {
        if (eof_) return false;
        continue;
      }
    }
    break;
  }
  switch (options_.encoding) {
    case CsvEncoding::kUtf8:
      buf_.append(raw_);
      break;
    case CsvEncoding::kLatin1:
      for (char c : raw_) AppendUtf8(buf_, static_cast<unsigned char>(c));
      break;
    case CsvEncoding::kWindows1252:
      for (char c : raw_) {
        const auto u = static_cast<unsigned char>(c);
        AppendUtf8(buf_, u >= 0x80 && u < 0xA0 ? kCp1252High[u - 0x80] : char32_t{u});
      }
      break;
  }
  return true;
}

Status CsvReader::Start() {
  NUDGE_ASSIGN_OR_RETURN(bool more, Fill());
  if (options_.delimiter != '\0') return Status::Ok();
  // Count the candidates outside quotes on the first line, reading on until it ends.
  size_t counts[3] = {0, 0, 0};
  static constexpr char kCandidates[3] = {',', ';', '\t'};
  bool in_quotes = false, line_done = false;
  size_t scanned = pos_;
  while (more) {
    for (; scanned < buf_.size(); ++scanned) {
      const char c = buf_[scanned];
      if (c == '"') {
        in_quotes = !in_quotes;
      } else if (!in_quotes && (c == '\r' || c == '\n')) {
        line_done = true;
        break;
      } else if (!in_quotes) {
        for (int i = 0; i < 3; ++i) counts[i] += c == kCandidates[i];
      }
    }
    if (line_done || buf_.size() - pos_ >= kSniffBytes) break;
    NUDGE_ASSIGN_OR_RETURN(more, Fill());
  }
  int best = 0;
  for (int i = 1; i < 3; ++i) {
    if (counts[i] > counts[best]) best = i;
  }
  options_.delimiter = kCandidates[best];
  return Status::Ok();
}

void CsvReader::Fail(CsvRecord& record, std::string message, int64_t line, int64_t column) {
  if (record.error.ok()) record.error = Status::Invalid(std::move(message), Where(line, column));
}

bool CsvReader::NewField(CsvRecord& record) {
  if (record.fields.size() >= options_.max_fields) {
    Fail(record, "more than " + std::to_string(options_.max_fields) + " fields", line_,
         column_ + 1);
    dropping_ = true;
    return false;
  }
  if (record_full_) {
    dropping_ = true;
    return false;
  }
  record.fields.emplace_back();
  dropping_ = false;
  return true;
}

void CsvReader::Append(CsvRecord& record, const char* data, size_t n, int64_t column) {
  if (dropping_ || record.fields.empty()) return;
  std::string& field = record.fields.back();
  const size_t field_room = options_.max_field_bytes - field.size();
  const size_t record_room = options_.max_record_bytes - record_bytes_;
  if (n > std::min(field_room, record_room)) {
    // Runs of more than one byte are ASCII, so byte k of the run is at column + k.
    if (field_room <= record_room) {
      Fail(record, "a field is longer than " + std::to_string(options_.max_field_bytes) + " bytes",
           line_, column + static_cast<int64_t>(field_room));
      n = field_room;
    } else {
      Fail(record,
           "the record is longer than " + std::to_string(options_.max_record_bytes) + " bytes",
           line_, column + static_cast<int64_t>(record_room));
      n = record_room;
      record_full_ = true;
    }
    dropping_ = true;
  }
  record_bytes_ += n;
  field.append(data, n);
}

// Checks a byte at or above 0x80 that starts a character (the continuation bytes are checked
// in Next), and keeps what the following bytes must be.
void CsvReader::Utf8Byte(CsvRecord& record, unsigned char c) {
  utf8_lo_ = 0x80;
  utf8_hi_ = 0xBF;
  utf8_lead_ = c;
  utf8_line_ = line_;
  utf8_column_ = column_;
  if (c >= 0xC2 && c <= 0xDF) {
    utf8_need_ = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    utf8_need_ = 2;
    if (c == 0xE0) utf8_lo_ = 0xA0;  // no overlong forms
    if (c == 0xED) utf8_hi_ = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    utf8_need_ = 3;
    if (c == 0xF0) utf8_lo_ = 0x90;
    if (c == 0xF4) utf8_hi_ = 0x8F;  // nothing past U+10FFFF
  } else {
    utf8_need_ = 0;
    Fail(record, "invalid UTF-8 (byte " + ByteHex(c) + "); the file may be latin1 or windows-1252",
         line_, column_);
  }
}

Result<bool> CsvReader::Next(CsvRecord& record) {
  if (!fatal_.ok()) return Err(fatal_);
  if (!started_) {
    started_ = true;
    Status s = Start();
    if (!s.ok()) {
      fatal_ = s;
      return Err(fatal_);
    }
  }
  record.fields.clear();
  record.error = Status::Ok();
  record.line = line_;
  record_bytes_ = 0;
  record_full_ = false;
  dropping_ = false;
  State state = State::kFieldStart;
  bool any = false;  // the record has begun
  int64_t quote_line = 0, quote_column = 0;
  const char delimiter = options_.delimiter;
  auto begin = [&] {
    if (!any) {
      any = true;
      NewField(record);
    }
  };

  for (;;) {
    if (pos_ == buf_.size()) {
      auto more = Fill();
      if (!more) {
        fatal_ = more.error();
        return Err(fatal_);
      }
      if (!*more) break;
    }
    const char* data = buf_.data();
    const size_t size = buf_.size();
    while (pos_ < size) {
      const auto c = static_cast<unsigned char>(data[pos_]);
      if (utf8_need_ > 0) {
        if (c >= utf8_lo_ && c <= utf8_hi_) {
          Append(record, data + pos_, 1, column_);
          ++pos_;
          --utf8_need_;
          utf8_lo_ = 0x80;
          utf8_hi_ = 0xBF;
          continue;
        }
        Fail(record,
             "invalid UTF-8 (byte " + ByteHex(utf8_lead_) +
                 " starts a character that does not follow); the file may be latin1 or "
                 "windows-1252",
             utf8_line_, utf8_column_);
        utf8_need_ = 0;
      }
      if (after_cr_) {
        after_cr_ = false;
        if (c == '\n') {  // the LF of a CRLF: the line was already counted
          if (state == State::kQuoted) Append(record, "\n", 1, column_ + 1);
          ++pos_;
          continue;
        }
      }
      if (c >= 0x80) {
        if (state == State::kFieldStart) {
          begin();
          state = State::kUnquoted;
        } else if (state == State::kQuoteInQuoted) {
          Fail(record,
               "unexpected character after the closing quote of a field (a quote inside a quoted "
               "field must be doubled)",
               line_, column_ + 1);
          state = State::kUnquoted;
        }
        ++column_;  // a lead byte, or a stray byte that counts as one character
        Utf8Byte(record, c);
        Append(record, data + pos_, 1, column_);
        ++pos_;
        continue;
      }
      if (c == '\r' || c == '\n') {
        ++pos_;
        const bool in_field = state == State::kQuoted;
        if (in_field) Append(record, data + pos_ - 1, 1, column_ + 1);
        ++line_;
        column_ = 0;
        after_cr_ = c == '\r';
        if (in_field) continue;
        if (!any) {
          if (options_.skip_blank_lines) {
            record.line = line_;
            continue;
          }
          begin();
        }
        return true;
      }
      if (c == static_cast<unsigned char>(delimiter) && state != State::kQuoted) {
        begin();
        NewField(record);
        state = State::kFieldStart;
        ++column_;
        ++pos_;
        continue;
      }
      if (c == '"') {
        ++column_;
        ++pos_;
        switch (state) {
          case State::kFieldStart:
            begin();
            state = State::kQuoted;
            quote_line = line_;
            quote_column = column_;
            break;
          case State::kQuoted:
            state = State::kQuoteInQuoted;
            break;
          case State::kQuoteInQuoted:
            Append(record, "\"", 1, column_);
            state = State::kQuoted;
            break;
          case State::kUnquoted:  // a stray quote inside an unquoted field is kept as written
            Append(record, "\"", 1, column_);
            break;
        }
        continue;
      }
      if (state == State::kQuoteInQuoted) {
        if (c == ' ' || c == '\t') {  // padding after a closing quote
          ++column_;
          ++pos_;
          continue;
        }
        Fail(record,
             "unexpected character after the closing quote of a field (a quote inside a quoted "
             "field must be doubled)",
             line_, column_ + 1);
        state = State::kUnquoted;
      } else if (state == State::kFieldStart) {
        begin();
        state = State::kUnquoted;
      }
      if (c == 0) {
        Fail(record, "NUL byte (is this a UTF-16 or binary file?)", line_, column_ + 1);
        Append(record, data + pos_, 1, column_ + 1);
        ++column_;
        ++pos_;
        continue;
      }
      // A run of ordinary ASCII goes in at once.
      const bool quoted = state == State::kQuoted;
      size_t end = pos_ + 1;
      while (end < size) {
        const auto d = static_cast<unsigned char>(data[end]);
        if (d == 0 || d >= 0x80 || d == '\r' || d == '\n' || d == '"' ||
            (!quoted && d == static_cast<unsigned char>(delimiter)))
          break;
        ++end;
      }
      Append(record, data + pos_, end - pos_, column_ + 1);
      column_ += static_cast<int64_t>(end - pos_);
      pos_ = end;
    }
  }

  // The end of the input.
  if (utf8_need_ > 0) {
    Fail(record,
         "invalid UTF-8 (byte " + ByteHex(utf8_lead_) +
             " starts a character cut off by the end of the file)",
         utf8_line_, utf8_column_);
    utf8_need_ = 0;
  }
  if (!any) return false;
  if (state == State::kQuoted) {
    record.error = Status::Invalid(
        "unterminated quoted field: the quote opened here never closes, so the rest of the file "
        "(to line " +
            std::to_string(line_) + ") is inside it",
        Where(quote_line, quote_column));
  }
  return true;
}

void AppendCsvField(std::string& out, std::string_view field, char delimiter) {
  const bool quote =
      field.find_first_of(std::string{delimiter, '"', '\r', '\n'}) != std::string_view::npos;
  if (!quote) {
    out.append(field);
    return;
  }
  out += '"';
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

void AppendCsvRecord(std::string& out, const std::vector<std::string>& fields, char delimiter) {
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += delimiter;
    AppendCsvField(out, fields[i], delimiter);
  }
  out += "\r\n";
}

}  // namespace nudge::core
