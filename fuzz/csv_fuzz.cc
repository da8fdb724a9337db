// libFuzzer target: the streaming CSV reader and the list-import header mapping over arbitrary
// bytes. Besides the sanitizers' findings it checks the reader's promises: the same records
// whatever the read size, records on increasing lines, fields within the limits, clean
// records valid UTF-8, and what AppendCsvRecord writes reads back the same.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/csv.h"
#include "core/json.h"
#include "profile/list_hygiene.h"

namespace {

using nudge::core::CsvEncoding;
using nudge::core::CsvOptions;
using nudge::core::CsvReader;
using nudge::core::CsvRecord;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Read {
  std::vector<CsvRecord> records;
  bool failed = false;
  char delimiter = 0;
};

Read ReadAll(std::string_view text, const CsvOptions& options, size_t chunk) {
  Read out;
  CsvReader reader(CsvReader::StringSource(text, chunk), options);
  CsvRecord record;
  int64_t last_line = 0;
  for (;;) {
    auto more = reader.Next(record);
    if (!more) {
      out.failed = true;
      break;
    }
    if (!*more) break;
    Check(record.line > last_line);
    last_line = record.line;
    size_t bytes = 0;
    for (const auto& f : record.fields) {
      Check(f.size() <= options.max_field_bytes);
      bytes += f.size();
    }
    Check(bytes <= options.max_record_bytes);
    Check(record.fields.size() <= options.max_fields);
    if (record.error.ok()) {
      for (const auto& f : record.fields) Check(nudge::core::IsValidUtf8(f));
    }
    out.records.push_back(record);
  }
  Check(reader.bytes_read() <= text.size());
  out.delimiter = reader.delimiter();
  return out;
}

uint32_t Hash(std::string_view s) {
  uint32_t h = 2166136261u;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // The options come from the input's hash, so the seeds stay plain CSV files.
  const uint32_t h = Hash(input);
  CsvOptions options;
  static constexpr char kDelimiters[] = {'\0', ',', ';', '\t'};
  options.delimiter = kDelimiters[h & 3];
  options.encoding = static_cast<CsvEncoding>((h >> 2) % 3);
  if (h & 0x20) {
    options.max_field_bytes = 1 + (h >> 8) % 64;
    options.max_record_bytes = 1 + (h >> 14) % 128;
    options.max_fields = 1 + (h >> 21) % 16;
  }
  options.skip_blank_lines = (h & 0x40) == 0;

  const Read whole = ReadAll(input, options, input.size() + 1);
  const Read bytes = ReadAll(input, options, 1 + (h >> 24) % 7);
  Check(whole.failed == bytes.failed && whole.delimiter == bytes.delimiter);
  Check(whole.records.size() == bytes.records.size());
  for (size_t i = 0; i < whole.records.size(); ++i) {
    Check(whole.records[i].line == bytes.records[i].line);
    Check(whole.records[i].fields == bytes.records[i].fields);
    Check(whole.records[i].error.ToString() == bytes.records[i].error.ToString());
  }

  // Clean records survive a round trip through the writer.
  for (const CsvRecord& r : whole.records) {
    if (!r.error.ok() || r.fields.empty() || (r.fields.size() == 1 && r.fields[0].empty()))
      continue;
    std::string text = "h\r\n";  // not first in the file, where a byte order mark is skipped
    nudge::core::AppendCsvRecord(text, r.fields, whole.delimiter);
    CsvOptions plain;
    plain.delimiter = whole.delimiter;
    const Read back = ReadAll(text, plain, text.size() + 1);
    Check(!back.failed && back.records.size() == 2);
    Check(back.records[1].error.ok() && back.records[1].fields == r.fields);
  }

  // The import's view of the file: the first record as a header, the others as values.
  if (whole.records.empty() || !whole.records[0].error.ok()) return 0;
  const auto& header = whole.records[0].fields;
  auto columns = nudge::profile::MapHeaders(header);
  Check(columns.has_value() && columns->size() == header.size());
  for (size_t i = 0; i < columns->size(); ++i) {
    Check(!(*columns)[i].key.empty());
    for (size_t j = 0; j < i; ++j) Check((*columns)[i].key != (*columns)[j].key);
  }
  std::vector<std::string> overrides;
  for (size_t i = 1; i < whole.records.size() && i < 4; ++i) {
    for (const auto& f : whole.records[i].fields) {
      overrides.push_back(f);
      nudge::profile::SuggestDomain(f);
      nudge::profile::IsRoleAddress(f);
      nudge::profile::SplitTags(f);
      nudge::profile::SnakeCase(f);
    }
  }
  (void)nudge::profile::MapHeaders(header, overrides);
  return 0;
}
