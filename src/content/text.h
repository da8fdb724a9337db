// Plain text from HTML (the text part of an email that has only HTML) and SMS segment counts.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nudge::content {

// Readable plain text for the text/plain part: block elements start lines, paragraphs and
// headings are separated by a blank line, list items get "- ", links become "text (url)"
// (just "url" when the text is the URL), <br> breaks the line, <hr> draws a rule, entities are
// decoded, and <head>, <style>, <script>, comments and hidden preheaders are dropped.
std::string HtmlToText(std::string_view html);

struct SmsSize {
  bool unicode = false;  // needs UCS-2 (a character outside the GSM 03.38 alphabet)
  size_t units = 0;      // septets (GSM-7, extension characters count 2) or UTF-16 units
  int segments = 0;      // 0 for an empty body
  const char* encoding() const { return unicode ? "UCS-2" : "GSM-7"; }
};

// How an SMS body is encoded and into how many segments it is split: GSM-7 fits 160 septets in
// one segment and 153 per segment beyond; UCS-2 70 units and 67 per segment beyond.
SmsSize MeasureSms(std::string_view utf8);

}  // namespace nudge::content
