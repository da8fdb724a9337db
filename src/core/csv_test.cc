#include "core/csv.h"

#include <gtest/gtest.h>

#include <sstream>

namespace nudge::core {
namespace {

using Fields = std::vector<std::string>;

struct Read {
  std::vector<CsvRecord> records;
  char delimiter = 0;
  Status fatal;
};

// Reads everything, `chunk` bytes per source read, so that every test also crosses buffer
// boundaries in every possible place when chunk is 1.
Read ReadAll(std::string_view text, CsvOptions options = {}, size_t chunk = 64 * 1024) {
  Read out;
  CsvReader reader(CsvReader::StringSource(text, chunk), options);
  CsvRecord record;
  for (;;) {
    auto more = reader.Next(record);
    if (!more) {
      out.fatal = more.error();
      break;
    }
    if (!*more) break;
    out.records.push_back(record);
  }
  out.delimiter = reader.delimiter();
  return out;
}

// The same input must give the same records whatever the read size.
Read ReadBoth(std::string_view text, CsvOptions options = {}) {
  Read big = ReadAll(text, options);
  Read small = ReadAll(text, options, 1);
  EXPECT_EQ(big.records.size(), small.records.size()) << text;
  for (size_t i = 0; i < std::min(big.records.size(), small.records.size()); ++i) {
    EXPECT_EQ(big.records[i].fields, small.records[i].fields) << text;
    EXPECT_EQ(big.records[i].line, small.records[i].line) << text;
    EXPECT_EQ(big.records[i].error.ToString(), small.records[i].error.ToString()) << text;
  }
  return big;
}

TEST(CsvReader, ReadsQuotesDoubledQuotesAndLineBreaksInsideFields) {
  Read r = ReadBoth(
      "name,note,email\r\n"
      "\"Smith, Ann\",\"she said \"\"hi\"\"\",ann@example.com\r\n"
      "Bob,\"two\r\nlines\",bob@example.com\r\n"
      "Cy,,cy@example.com");
  ASSERT_TRUE(r.fatal.ok()) << r.fatal.ToString();
  ASSERT_EQ(r.records.size(), 4u);
  EXPECT_EQ(r.records[0].fields, (Fields{"name", "note", "email"}));
  EXPECT_EQ(r.records[1].fields, (Fields{"Smith, Ann", "she said \"hi\"", "ann@example.com"}));
  EXPECT_EQ(r.records[2].fields, (Fields{"Bob", "two\r\nlines", "bob@example.com"}));
  EXPECT_EQ(r.records[3].fields, (Fields{"Cy", "", "cy@example.com"}));
  // Each record says the line it starts on; the quoted line break moves the next one down.
  EXPECT_EQ(r.records[0].line, 1);
  EXPECT_EQ(r.records[1].line, 2);
  EXPECT_EQ(r.records[2].line, 3);
  EXPECT_EQ(r.records[3].line, 5);
  for (const auto& rec : r.records) EXPECT_TRUE(rec.error.ok()) << rec.error.ToString();
}

TEST(CsvReader, AcceptsLfAndLoneCrLineEndsAndSkipsBlankLines) {
  Read r = ReadBoth("a,b\n1,2\n\n3,4\r5,6\r\n\r\n");
  ASSERT_EQ(r.records.size(), 4u);
  EXPECT_EQ(r.records[1].fields, (Fields{"1", "2"}));
  EXPECT_EQ(r.records[2].fields, (Fields{"3", "4"}));
  EXPECT_EQ(r.records[2].line, 4);
  EXPECT_EQ(r.records[3].fields, (Fields{"5", "6"}));
  EXPECT_EQ(r.records[3].line, 5);

  CsvOptions keep;
  keep.skip_blank_lines = false;
  Read k = ReadBoth("a\n\nb\n", keep);
  ASSERT_EQ(k.records.size(), 3u);
  EXPECT_EQ(k.records[1].fields, (Fields{""}));
}

TEST(CsvReader, SkipsAUtf8ByteOrderMark) {
  Read r = ReadBoth("\xEF\xBB\xBF\"Email Address\",Name\nann@example.com,Ann\n");
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.records[0].fields, (Fields{"Email Address", "Name"}));
  CsvReader reader(CsvReader::StringSource("\xEF\xBB\xBFx\n"));
  CsvRecord rec;
  ASSERT_TRUE(*reader.Next(rec));
  EXPECT_TRUE(reader.had_bom());
  EXPECT_EQ(rec.fields, (Fields{"x"}));
}

TEST(CsvReader, DetectsTheDelimiterFromTheHeaderLine) {
  EXPECT_EQ(ReadBoth("email;name;city\na@b.co;A;Berlin, DE\n").delimiter, ';');
  Read semi = ReadBoth("email;name;city\na@b.co;A;\"Berlin, DE\"\n");
  EXPECT_EQ(semi.records[1].fields, (Fields{"a@b.co", "A", "Berlin, DE"}));
  EXPECT_EQ(ReadBoth("email\tname\na@b.co\tA, B\n").delimiter, '\t');
  // Delimiters inside quotes do not count.
  EXPECT_EQ(ReadBoth("\"a;b;c;d\",e,f\n").delimiter, ',');
  EXPECT_EQ(ReadBoth("email\n").delimiter, ',');
  CsvOptions given;
  given.delimiter = ';';
  Read forced = ReadBoth("a,b;c\n", given);
  EXPECT_EQ(forced.records[0].fields, (Fields{"a,b", "c"}));
}

TEST(CsvReader, InvalidUtf8RejectsThatRecordWithLineAndColumnAndGoesOn) {
  Read r = ReadBoth("name,email\nJos\xE9,jose@example.com\n\"ok\",ok@example.com\n");
  ASSERT_TRUE(r.fatal.ok());
  ASSERT_EQ(r.records.size(), 3u);
  EXPECT_FALSE(r.records[1].error.ok());
  EXPECT_EQ(r.records[1].error.where(), "2:4");
  EXPECT_NE(r.records[1].error.message().find("0xE9"), std::string::npos);
  EXPECT_EQ(r.records[1].fields.size(), 2u);  // the record still ends where it should
  EXPECT_TRUE(r.records[2].error.ok());
  EXPECT_EQ(r.records[2].fields, (Fields{"ok", "ok@example.com"}));
  // Columns count characters, not bytes; overlongs and surrogates are refused.
  EXPECT_EQ(ReadBoth("a\n\xC3\xA9\xC3\xA9\xC0\xAF\n").records[1].error.where(), "2:3");
  EXPECT_FALSE(ReadBoth("\xED\xA0\x80\n").records[0].error.ok());
  EXPECT_FALSE(ReadBoth("ab\xF0\x9F\x98").records[0].error.ok());
  EXPECT_TRUE(ReadBoth("\xF0\x9F\x98\x80,\xE2\x82\xAC\n").records[0].error.ok());
}

TEST(CsvReader, TranscodesLatin1AndWindows1252) {
  CsvOptions latin1;
  latin1.encoding = CsvEncoding::kLatin1;
  Read l = ReadBoth("name\nJos\xE9 M\xFCller\n", latin1);
  ASSERT_EQ(l.records.size(), 2u);
  EXPECT_TRUE(l.records[1].error.ok());
  EXPECT_EQ(l.records[1].fields[0], "Jos\xC3\xA9 M\xC3\xBCller");
  CsvOptions cp1252;
  cp1252.encoding = CsvEncoding::kWindows1252;
  Read w = ReadBoth("price\n\x80 5 \x93quoted\x94\n", cp1252);
  EXPECT_EQ(w.records[1].fields[0], "\xE2\x82\xAC 5 \xE2\x80\x9Cquoted\xE2\x80\x9D");
  EXPECT_EQ(*ParseCsvEncoding("UTF-8"), CsvEncoding::kUtf8);
  EXPECT_EQ(*ParseCsvEncoding("ISO-8859-1"), CsvEncoding::kLatin1);
  EXPECT_EQ(*ParseCsvEncoding("cp1252"), CsvEncoding::kWindows1252);
  EXPECT_FALSE(ParseCsvEncoding("ebcdic"));
}

TEST(CsvReader, UnterminatedQuoteAtTheEndPointsAtTheOpeningQuote) {
  Read r = ReadBoth("a,b\n1,2\n3,\"oops\n4,5\n6,7\n");
  ASSERT_TRUE(r.fatal.ok());
  ASSERT_EQ(r.records.size(), 3u);
  EXPECT_EQ(r.records[2].line, 3);
  EXPECT_EQ(r.records[2].error.where(), "3:3");
  EXPECT_NE(r.records[2].error.message().find("never closes"), std::string::npos);
}

TEST(CsvReader, TextAfterAClosingQuoteIsAnErrorButPaddingIsNot) {
  Read r = ReadBoth("\"Smith\" Jr,x\n\"a\"  ,b\n");
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.records[0].error.where(), "1:9");
  EXPECT_TRUE(r.records[1].error.ok());
  EXPECT_EQ(r.records[1].fields, (Fields{"a", "b"}));
  // A stray quote inside an unquoted field is kept as written.
  EXPECT_EQ(ReadBoth("5'10\",x\n").records[0].fields, (Fields{"5'10\"", "x"}));
}

TEST(CsvReader, LimitsRejectTheRecordAndTheStreamGoesOn) {
  CsvOptions small;
  small.max_field_bytes = 8;
  small.max_record_bytes = 12;
  small.max_fields = 3;
  Read r = ReadBoth("a,b\n123456789,x\n1234,5678,9\n1234567,1234567\n1,2,3,4\nok,ok\n", small);
  ASSERT_EQ(r.records.size(), 6u);
  EXPECT_NE(r.records[1].error.message().find("field is longer than 8"), std::string::npos);
  EXPECT_EQ(r.records[1].fields[0], "12345678");  // cut at the limit
  EXPECT_TRUE(r.records[2].error.ok());
  EXPECT_NE(r.records[3].error.message().find("record is longer than 12"), std::string::npos);
  EXPECT_NE(r.records[4].error.message().find("more than 3 fields"), std::string::npos);
  EXPECT_EQ(r.records[4].fields.size(), 3u);
  EXPECT_TRUE(r.records[5].error.ok());
  EXPECT_EQ(r.records[5].fields, (Fields{"ok", "ok"}));
}

TEST(CsvReader, NulBytesAndUtf16FilesAreNamed) {
  Read nul = ReadBoth(std::string_view("a,b\nx\0y,z\n", 10));
  ASSERT_EQ(nul.records.size(), 2u);
  EXPECT_NE(nul.records[1].error.message().find("NUL"), std::string::npos);
  EXPECT_EQ(nul.records[1].error.where(), "2:2");

  Read utf16 =
      ReadAll(std::string_view("\xFF\xFE"
                               "e\0m\0",
                               6));
  EXPECT_FALSE(utf16.fatal.ok());
  EXPECT_NE(utf16.fatal.message().find("UTF-16"), std::string::npos);
}

TEST(CsvReader, ReadsAStreamInBoundedChunks) {
  std::string text = "email,n\n";
  for (int i = 0; i < 50000; ++i) text += "user" + std::to_string(i) + "@example.com," + "x\n";
  std::istringstream in(text);
  CsvReader reader(CsvReader::StreamSource(in));
  CsvRecord rec;
  int64_t count = 0, last_line = 0;
  while (*reader.Next(rec)) {
    ++count;
    last_line = rec.line;
    ASSERT_TRUE(rec.error.ok());
  }
  EXPECT_EQ(count, 50001);
  EXPECT_EQ(last_line, 50001);
  EXPECT_EQ(reader.bytes_read(), text.size());
}

TEST(CsvWriter, QuotesOnlyWhatNeedsIt) {
  std::string out;
  AppendCsvRecord(out, {"plain", "a,b", "say \"hi\"", "two\nlines", ""});
  EXPECT_EQ(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
  // What is written reads back the same.
  Read r = ReadBoth(out);
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].fields, (Fields{"plain", "a,b", "say \"hi\"", "two\nlines", ""}));
  out.clear();
  AppendCsvRecord(out, {"a,b", "c;d"}, ';');
  EXPECT_EQ(out, "a,b;\"c;d\"\r\n");
}

}  // namespace
}  // namespace nudge::core
