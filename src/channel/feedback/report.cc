#include "channel/feedback/report.h"

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string>
#include <unordered_map>

#include "channel/feedback/internal/text.h"

namespace nudge::channel {

using feedback_internal::CleanText;
using feedback_internal::DropFieldType;
using feedback_internal::FindAddresses;
using feedback_internal::IContains;
using feedback_internal::IEquals;
using feedback_internal::IsSpace;
using feedback_internal::IStartsWith;
using feedback_internal::Lines;
using feedback_internal::MtaName;
using feedback_internal::StatusToken;
using feedback_internal::ToLower;
using feedback_internal::Trim;

namespace {

constexpr size_t kMaxDiagnostic = 1000;
constexpr size_t kMaxShortField = 256;

using Fields = std::vector<MimeField>;

// Depth-first search for a part of one of `types` among the report's own parts: the returned
// message inside a message/* part is not searched (it could itself be an old bounce).
const MimeNode* FindPart(const MimeNode& node, std::initializer_list<std::string_view> types) {
  for (std::string_view t : types) {
    if (node.type == t) return &node;
  }
  if (!node.IsMultipart()) return nullptr;
  for (const MimeNode& child : node.children) {
    if (const MimeNode* found = FindPart(child, types)) return found;
  }
  return nullptr;
}

// The header fields of the message we sent as the report returns it, if it does.
bool ReturnedHeaders(const MimeNode& root, Fields& out) {
  const MimeNode* part = FindPart(
      root, {"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"});
  if (part == nullptr || part == &root) return false;
  if (!part->children.empty()) {
    out = part->children.front().headers;
  } else {
    std::string_view body = part->body;
    while (!body.empty() && IsSpace(body.front())) body.remove_prefix(1);
    ParseMimeFields(body, out);
  }
  return true;
}

// The first "Message-ID:" line in free text (returned headers pasted into a notice, possibly
// indented), or "".
std::string ScanMessageId(std::string_view text) {
  const std::vector<std::string_view> lines = Lines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string_view line = Trim(lines[i]);
    if (!IStartsWith(line, "message-id:")) continue;
    std::string id = NormalizeMessageId(line.substr(11));
    if (id.empty() && i + 1 < lines.size()) id = NormalizeMessageId(lines[i + 1]);
    if (!id.empty()) return id;
  }
  return "";
}

// The address in a DSN address field: "rfc822; user@example.com" (the type is dropped).
std::string DsnAddress(std::string_view value) {
  const size_t semi = value.find(';');
  if (semi != std::string_view::npos && value.substr(0, semi).find('@') == std::string_view::npos) {
    value = value.substr(semi + 1);
  }
  return NormalizeRecipient(value);
}

// The first word of a field, lowercased ("failed", "abuse").
std::string FirstWord(std::string_view value) {
  value = Trim(value);
  size_t end = 0;
  while (end < value.size() && !IsSpace(value[end]) && value[end] != '(' && value[end] != ';') {
    ++end;
  }
  return CleanText(ToLower(value.substr(0, end)), 64);
}

// Splits a report body (DSN or ARF fields) into its blank-line separated groups.
std::vector<Fields> FieldGroups(std::string_view body, size_t max_fields) {
  std::vector<Fields> groups;
  size_t pos = 0;
  size_t total = 0;
  while (pos < body.size() && total < max_fields) {
    // Skip blank (or white space only) lines between groups.
    for (;;) {
      const size_t eol = body.find('\n', pos);
      const size_t end = eol == std::string_view::npos ? body.size() : eol;
      if (pos >= body.size() || !Trim(body.substr(pos, end - pos)).empty()) break;
      pos = end + 1;
    }
    if (pos >= body.size()) break;
    Fields group;
    const size_t used = ParseMimeFields(body.substr(pos), group, max_fields - total);
    if (group.empty()) {
      // Not a field: skip the line.
      const size_t eol = body.find('\n', pos);
      pos = eol == std::string_view::npos ? body.size() : eol + 1;
      continue;
    }
    total += group.size();
    groups.push_back(std::move(group));
    pos += used == 0 ? 1 : used;
  }
  return groups;
}

Feedback::Kind KindForDsn(std::string_view action, std::string_view status) {
  const Feedback::Kind by_status = KindForStatus(status);
  if (action == "failed") {
    if (by_status == Feedback::Kind::kSoftBounce) return by_status;
    return Feedback::Kind::kHardBounce;
  }
  if (action == "delayed") return Feedback::Kind::kSoftBounce;
  if (action == "delivered" || action == "relayed" || action == "expanded") {
    return Feedback::Kind::kDelivered;
  }
  return by_status;
}

// The status to report: the Status field, refined or replaced by the diagnostic's code.
std::string BestStatus(std::string_view field, std::string_view diagnostic) {
  std::string status = StatusToken(field);
  const std::string from_text = ExtractStatusCode(diagnostic);
  if (status.empty()) return from_text;
  const bool generic = status.size() == 5 && status.substr(1) == ".0.0";
  if (generic && !from_text.empty() && from_text[0] == status[0] && from_text.substr(1) != ".0.0") {
    return from_text;
  }
  return status;
}

// The first text part of the report (not inside the returned message); HTML is reduced to
// its text when there is no plain part.
std::string StripHtml(std::string_view html) {
  std::string out;
  out.reserve(html.size());
  size_t i = 0;
  while (i < html.size()) {
    if (html[i] == '<') {
      const size_t close = html.find('>', i);
      if (close == std::string_view::npos) break;
      const std::string_view tag = html.substr(i + 1, close - i - 1);
      const bool breaks = IStartsWith(tag, "br") || IStartsWith(tag, "/p") ||
                          IStartsWith(tag, "/div") || IStartsWith(tag, "/tr") ||
                          IStartsWith(tag, "p") || IStartsWith(tag, "/h") ||
                          IStartsWith(tag, "li") || IStartsWith(tag, "/td");
      out += breaks ? '\n' : ' ';
      i = close + 1;
      continue;
    }
    if (html[i] == '&') {
      static constexpr std::pair<std::string_view, std::string_view> kEntities[] = {
          {"&amp;", "&"}, {"&lt;", "<"},   {"&gt;", ">"},  {"&quot;", "\""},
          {"&#39;", "'"}, {"&nbsp;", " "}, {"&#64;", "@"}, {"&#160;", " "}};
      bool matched = false;
      for (const auto& [entity, text] : kEntities) {
        if (IStartsWith(html.substr(i), entity)) {
          out += text;
          i += entity.size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    out += html[i++];
  }
  return out;
}

const MimeNode* FirstLeaf(const MimeNode& node, std::string_view type) {
  if (node.type == type && node.children.empty()) return &node;
  if (!node.IsMultipart()) return nullptr;
  for (const MimeNode& child : node.children) {
    if (const MimeNode* found = FirstLeaf(child, type)) return found;
  }
  return nullptr;
}

std::string NoticeText(const MimeNode& root) {
  if (const MimeNode* text = FirstLeaf(root, "text/plain")) return text->body;
  if (const MimeNode* html = FirstLeaf(root, "text/html")) return StripHtml(html->body);
  if (root.children.empty()) return root.body;
  return "";
}

// The original Message-ID: the returned message's header, else the per-message fallback,
// else a Message-ID line in the report's text.
std::string OriginalMessageId(const MimeNode& root, const Fields& returned, bool have_returned,
                              std::string_view fallback) {
  if (have_returned) {
    std::string id = NormalizeMessageId(FindField(returned, "Message-ID"));
    if (!id.empty()) return id;
  }
  std::string id = NormalizeMessageId(fallback);
  if (!id.empty()) return id;
  return ScanMessageId(NoticeText(root));
}

// ---------------------------------------------------------------------------------------------
// DSN

struct DsnRecipient {
  std::string_view final_recipient, original_recipient, action, status, diagnostic, remote_mta;
};

std::vector<Feedback> ParseDsn(const MimeNode& root, const MimeNode& part,
                               const ReportLimits& limits) {
  const std::vector<Fields> groups = FieldGroups(part.body, limits.mime.max_fields * 8);
  std::string_view envelope_id, original_message_id;
  std::vector<DsnRecipient> records;
  for (const Fields& group : groups) {
    DsnRecipient current;
    auto flush = [&] {
      if (!current.final_recipient.empty() || !current.original_recipient.empty()) {
        records.push_back(current);
      }
      current = DsnRecipient();
    };
    for (const MimeField& f : group) {
      const std::string_view name = f.name;
      const std::string_view value = f.value;
      auto set = [&](std::string_view& slot) {
        if (slot.empty()) slot = value;
      };
      if (IEquals(name, "Final-Recipient")) {
        if (!current.final_recipient.empty()) flush();
        current.final_recipient = value;
      } else if (IEquals(name, "Original-Recipient")) {
        if (!current.original_recipient.empty()) flush();
        current.original_recipient = value;
      } else if (IEquals(name, "Action")) {
        set(current.action);
      } else if (IEquals(name, "Status")) {
        set(current.status);
      } else if (IEquals(name, "Diagnostic-Code")) {
        set(current.diagnostic);
      } else if (IEquals(name, "Remote-MTA")) {
        set(current.remote_mta);
      } else if (IEquals(name, "Original-Envelope-Id")) {
        if (envelope_id.empty()) envelope_id = value;
      } else if (IEquals(name, "X-Original-Message-ID")) {
        if (original_message_id.empty()) original_message_id = value;
      }
    }
    flush();
  }

  std::vector<Feedback> out;
  if (records.empty()) return out;
  Fields returned;
  const bool have_returned = ReturnedHeaders(root, returned);
  const std::string message_id =
      OriginalMessageId(root, returned, have_returned, original_message_id);
  for (const DsnRecipient& r : records) {
    if (out.size() >= limits.max_recipients) break;
    std::string recipient = DsnAddress(r.final_recipient);
    if (recipient.empty()) recipient = DsnAddress(r.original_recipient);
    if (recipient.empty()) continue;
    Feedback f;
    f.source = "dsn";
    f.recipient = std::move(recipient);
    f.message_id = message_id;
    const std::string_view diagnostic = DropFieldType(r.diagnostic);
    f.diagnostic = CleanText(diagnostic, kMaxDiagnostic);
    f.status = BestStatus(r.status, diagnostic);
    f.subtype = FirstWord(r.action);
    f.kind = KindForDsn(f.subtype, f.status);
    f.envelope_id = CleanText(envelope_id, kMaxShortField);
    f.remote_mta = MtaName(r.remote_mta);
    out.push_back(std::move(f));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ARF

Result<std::vector<Feedback>> ParseArf(const MimeNode& root, const MimeNode& part,
                                       const ReportLimits& limits) {
  const std::vector<Fields> groups = FieldGroups(part.body, limits.mime.max_fields);
  std::string feedback_type;
  std::vector<std::string> recipients;
  for (const Fields& group : groups) {
    for (const MimeField& f : group) {
      if (IEquals(f.name, "Feedback-Type")) {
        if (feedback_type.empty()) feedback_type = FirstWord(f.value);
      } else if (IEquals(f.name, "Original-Rcpt-To") || IEquals(f.name, "Removal-Recipient")) {
        std::string address = DsnAddress(f.value);
        if (!address.empty() &&
            std::find(recipients.begin(), recipients.end(), address) == recipients.end()) {
          recipients.push_back(std::move(address));
        }
      }
    }
  }
  Fields returned;
  const bool have_returned = ReturnedHeaders(root, returned);
  if (recipients.empty() && have_returned) {
    recipients = FindAddresses(FindField(returned, "To"), limits.max_recipients);
  }
  if (recipients.empty()) recipients.emplace_back();  // redacted: found through message_id

  const bool complaint = feedback_type != "not-spam" && feedback_type != "auth-failure";
  const std::string message_id = OriginalMessageId(root, returned, have_returned, {});
  std::string diagnostic;
  if (const MimeNode* text = FirstLeaf(root, "text/plain")) {
    diagnostic = CleanText(text->body, 300);
  }
  std::vector<Feedback> out;
  for (std::string& recipient : recipients) {
    if (out.size() >= limits.max_recipients) break;
    Feedback f;
    f.kind = complaint ? Feedback::Kind::kComplaint : Feedback::Kind::kUnknown;
    f.source = "arf";
    f.recipient = std::move(recipient);
    f.message_id = message_id;
    f.subtype = feedback_type;
    f.diagnostic = diagnostic;
    out.push_back(std::move(f));
  }
  return out;
}

// Microsoft's Junk Mail Reporting Program (JMRP) in its own format: the reported message
// attached as message/rfc822, its recipient in X-HmXmrOriginalRecipient.
std::optional<Feedback> ParseJmrp(const MimeNode& root) {
  Fields returned;
  if (!ReturnedHeaders(root, returned)) return std::nullopt;
  const std::string_view reported = FindField(returned, "X-HmXmrOriginalRecipient");
  if (reported.empty()) return std::nullopt;
  Feedback f;
  f.kind = Feedback::Kind::kComplaint;
  f.source = "jmrp";
  f.subtype = "abuse";
  f.recipient = NormalizeRecipient(reported);
  f.message_id = NormalizeMessageId(FindField(returned, "Message-ID"));
  return f;
}

// ---------------------------------------------------------------------------------------------
// Plain-text bounces

constexpr std::string_view kBounceSubjects[] = {"undeliver",
                                                "undelivered",
                                                "delivery status notification",
                                                "mail delivery fail",
                                                "delivery failure",
                                                "failure notice",
                                                "returned mail",
                                                "delivery has failed",
                                                "could not be delivered",
                                                "nondeliverable",
                                                "non-delivery",
                                                "non delivery",
                                                "delivery notification",
                                                "delayed mail",
                                                "delivery delayed",
                                                "mail system error",
                                                "warning: could not send",
                                                "message not delivered",
                                                "delivery problem",
                                                "rejected:",
                                                "not delivered"};

bool LooksLikeBounce(const MimeNode& root) {
  if (!Trim(root.Header("X-Failed-Recipients")).empty()) return true;
  const std::string_view from = root.Header("From");
  if (IContains(from, "mailer-daemon") || IContains(from, "postmaster") ||
      IContains(from, "mail delivery") || IContains(from, "mail administrator")) {
    return true;
  }
  const std::string subject = DecodeHeaderWords(root.Header("Subject"));
  for (std::string_view s : kBounceSubjects) {
    if (IContains(subject, s)) return true;
  }
  return false;
}

// Where the copy of the original message starts in a notice, or npos.
size_t OriginalMarker(std::string_view notice, size_t& after) {
  size_t pos = 0;
  while (pos < notice.size()) {
    const size_t eol = notice.find('\n', pos);
    const size_t end = eol == std::string_view::npos ? notice.size() : eol;
    const std::string_view line = Trim(notice.substr(pos, end - pos));
    const bool dashed = line.substr(0, 2) == "--" || line.substr(0, 2) == "==";
    if ((dashed &&
         (IContains(line, "copy of") || IContains(line, "original message") ||
          IContains(line, "message follows") || IContains(line, "returned message") ||
          IContains(line, "message headers") || IContains(line, "undelivered message"))) ||
        IStartsWith(line, "original message headers") ||
        IStartsWith(line, "message headers follow") ||
        IStartsWith(line, "original message follows") ||
        IStartsWith(line, "headers of the original message") ||
        IStartsWith(line, "below is a copy of the original message") ||
        IStartsWith(line, "--- below this line is a copy")) {
      after = end == notice.size() ? end : end + 1;
      return pos;
    }
    pos = end + 1;
  }
  return std::string_view::npos;
}

struct Found {
  std::string address;
  std::string detail;
};

bool Has(const std::vector<Found>& found, std::string_view address) {
  return std::any_of(found.begin(), found.end(),
                     [&](const Found& f) { return f.address == address; });
}

size_t Indent(std::string_view line) {
  size_t n = 0;
  while (n < line.size() && (line[n] == ' ' || line[n] == '\t')) ++n;
  return n;
}

// The address a line consists of ("  user@example.com", "<user@example.com>:",
// "user@example.com (generated from ...)" is not one), or "".
std::string AddressLine(std::string_view line) {
  std::string_view t = Trim(line);
  if (!t.empty() && t.back() == ':') t.remove_suffix(1);
  if (t.find(' ') != std::string_view::npos || t.find('\t') != std::string_view::npos) return "";
  if (t.find('@') == std::string_view::npos) return "";
  return NormalizeRecipient(t);
}

void AppendLine(std::string& detail, std::string_view line) {
  if (detail.size() > 4 * kMaxDiagnostic) return;
  if (!detail.empty()) detail += '\n';
  detail += Trim(line);
}

// qmail (and Yahoo's "failure notice"): "<user@example.com>:" then a paragraph.
void FindQmailStyle(const std::vector<std::string_view>& lines, size_t max,
                    std::vector<Found>& found) {
  constexpr size_t kNone = static_cast<size_t>(-1);
  size_t current = kNone;
  for (std::string_view line : lines) {
    const std::string_view t = Trim(line);
    if (t.size() > 3 && t.front() == '<' && t.substr(t.size() - 2) == ">:") {
      std::string address = NormalizeRecipient(t.substr(0, t.size() - 1));
      if (!address.empty() && !Has(found, address) && found.size() < max) {
        found.push_back({std::move(address), ""});
        current = found.size() - 1;
        continue;
      }
    }
    if (t.empty()) {
      current = kNone;
    } else if (current != kNone) {
      AppendLine(found[current].detail, t);
    }
  }
}

// Exim ("The following address(es) failed:"), its delay warnings, and sendmail ("----- The
// following addresses had permanent fatal errors -----"): a heading, then address lines, each
// followed by its (more indented) detail lines.
void FindListStyle(const std::vector<std::string_view>& lines, size_t max,
                   std::vector<Found>& found) {
  static constexpr std::string_view kHeadings[] = {
      "address(es) failed",         "addresses failed",           "following addresses had",
      "following address(es)",      "following recipients",       "not yet been delivered is",
      "not yet been delivered are", "could not be delivered to:", "following recipient(s)"};
  constexpr size_t kNone = static_cast<size_t>(-1);
  bool in_list = false;
  size_t current = kNone;
  size_t current_indent = 0;
  for (std::string_view line : lines) {
    const std::string_view t = Trim(line);
    if (!in_list) {
      for (std::string_view h : kHeadings) {
        if (IContains(t, h)) in_list = true;
      }
      continue;
    }
    if (t.empty()) continue;
    if (t.substr(0, 3) == "---" || t.substr(0, 3) == "===") {
      if (!found.empty()) break;
      continue;
    }
    const size_t indent = Indent(line);
    std::string address = AddressLine(line);
    if (!address.empty() && (current == kNone || indent <= current_indent)) {
      current_indent = indent;
      current = kNone;
      for (size_t i = 0; i < found.size(); ++i) {
        if (found[i].address == address) current = i;
      }
      if (current != kNone) continue;  // listed again: its detail goes to the first entry
      if (found.size() >= max) break;
      found.push_back({std::move(address), ""});
      current = found.size() - 1;
      continue;
    }
    if (current != kNone && indent > current_indent) {
      AppendLine(found[current].detail, t);
      continue;
    }
    if (!found.empty()) break;  // prose after the list
  }
}

// The lines of a notice, the addresses each names and where each address is first named.
struct NoticeLines {
  explicit NoticeLines(std::string_view notice) : lines(Lines(notice)), on_line(lines.size()) {
    for (size_t i = 0; i < lines.size(); ++i) {
      on_line[i] = FindAddresses(lines[i], 8);
      for (const std::string& a : on_line[i]) first.emplace(a, i);
    }
  }

  // The line first naming `address` and the next ones up to a blank line (at most 6).
  std::string DetailAround(const std::string& address) const {
    std::string detail;
    const auto it = first.find(address);
    if (it == first.end()) return detail;
    for (size_t j = it->second; j < lines.size() && j < it->second + 6; ++j) {
      if (Trim(lines[j]).empty()) break;
      AppendLine(detail, lines[j]);
    }
    return detail;
  }

  std::vector<std::string_view> lines;
  std::vector<std::vector<std::string>> on_line;
  std::unordered_map<std::string, size_t> first;
};

// What wording alone says: kHardBounce or kSoftBounce from strong words; with `weak`, plain
// "failed"/"could not be delivered" count too (as soft).
Feedback::Kind KindFromWords(std::string_view text, bool weak) {
  static constexpr std::string_view kTemporaryFirst[] = {"mailbox full", "over quota",
                                                         "quota exceeded", "mailbox is full"};
  static constexpr std::string_view kPermanent[] = {
      "permanent",         "retry timeout exceeded", "giving up",
      "given up",          "does not exist",         "user unknown",
      "unknown user",      "no such user",           "no mailbox",
      "not found",         "unrouteable address",    "address rejected",
      "invalid recipient", "no such recipient"};
  static constexpr std::string_view kTemporary[] = {
      "temporar",        "delayed",        "not yet been delivered",
      "will retry",      "will continue",  "still trying",
      "try again later", "transient",      "still being retried",
      "deferred",        "will be retried"};
  static constexpr std::string_view kFailed[] = {"could not be delivered",
                                                 "couldn't be delivered",
                                                 "wasn't delivered",
                                                 "undeliverable",
                                                 "failed",
                                                 "rejected",
                                                 "unable to deliver",
                                                 "not delivered"};
  for (std::string_view w : kTemporaryFirst) {
    if (IContains(text, w)) return Feedback::Kind::kSoftBounce;
  }
  for (std::string_view w : kPermanent) {
    if (IContains(text, w)) return Feedback::Kind::kHardBounce;
  }
  for (std::string_view w : kTemporary) {
    if (IContains(text, w)) return Feedback::Kind::kSoftBounce;
  }
  if (!weak) return Feedback::Kind::kUnknown;
  for (std::string_view w : kFailed) {
    // A failure said in no more words than that may well be the sender's problem: counted
    // (soft), since suppressing on a guess could silence a valid address for good.
    if (IContains(text, w)) return Feedback::Kind::kSoftBounce;
  }
  return Feedback::Kind::kUnknown;
}

Result<std::vector<Feedback>> ParseTextBounce(const MimeNode& root, const ReportLimits& limits) {
  if (!LooksLikeBounce(root)) {
    return Err(Status::Invalid(
        "not a bounce or complaint: no delivery-status or feedback-report part, and neither "
        "the sender, the subject nor X-Failed-Recipients is that of a bounce"));
  }
  const std::string text = NoticeText(root);
  std::string_view notice = text;
  std::string_view original_text;
  Fields returned;
  bool have_returned = ReturnedHeaders(root, returned);
  size_t after = 0;
  const size_t marker = OriginalMarker(notice, after);
  if (marker != std::string_view::npos) {
    original_text = notice.substr(after);
    notice = notice.substr(0, marker);
    if (!have_returned) {
      std::string_view headers = original_text;
      while (!headers.empty() && IsSpace(headers.front())) headers.remove_prefix(1);
      ParseMimeFields(headers, returned, limits.mime.max_fields);
      have_returned = !returned.empty();
    }
  }

  std::string message_id;
  if (have_returned) message_id = NormalizeMessageId(FindField(returned, "Message-ID"));
  if (message_id.empty()) message_id = ScanMessageId(original_text);
  if (message_id.empty()) message_id = ScanMessageId(notice);

  // A notice is a few paragraphs; past this it is not one, and the heuristics need not read it.
  constexpr size_t kMaxNotice = 128 * 1024;
  if (notice.size() > kMaxNotice) notice = notice.substr(0, kMaxNotice);
  const NoticeLines indexed(notice);
  const std::vector<std::string_view>& lines = indexed.lines;
  const size_t max = limits.max_recipients;
  std::vector<Found> found;
  FindQmailStyle(lines, max, found);
  if (found.empty()) FindListStyle(lines, max, found);
  for (const std::string& address : FindAddresses(root.Header("X-Failed-Recipients"), max)) {
    if (!Has(found, address) && found.size() < max) {
      found.push_back({address, indexed.DetailAround(address)});
    }
  }
  if (found.empty()) {
    // Last resort: addresses in the notice that are neither ours nor a mail daemon's, on a line
    // with a status code, or among the returned message's recipients.
    std::vector<std::string> excluded;
    for (std::string_view name : {"From", "To", "Reply-To", "Return-Path", "Sender"}) {
      for (std::string& a : FindAddresses(root.Header(name), 16)) excluded.push_back(a);
      if (have_returned) {
        for (std::string& a : FindAddresses(FindField(returned, name), 16)) {
          if (name != "To") excluded.push_back(a);
        }
      }
    }
    std::vector<std::string> original_recipients;
    if (have_returned) {
      for (std::string_view name : {"To", "Cc"}) {
        for (std::string& a : FindAddresses(FindField(returned, name), max)) {
          original_recipients.push_back(std::move(a));
        }
      }
    }
    for (size_t i = 0; i < lines.size(); ++i) {
      for (const std::string& address : indexed.on_line[i]) {
        if (found.size() >= max || Has(found, address)) continue;
        if (std::find(excluded.begin(), excluded.end(), address) != excluded.end()) continue;
        if (IStartsWith(address, "mailer-daemon@") || IStartsWith(address, "postmaster@")) {
          continue;
        }
        const bool named = std::find(original_recipients.begin(), original_recipients.end(),
                                     address) != original_recipients.end();
        if (named || !ExtractStatusCode(lines[i]).empty()) {
          found.push_back({address, indexed.DetailAround(address)});
        }
      }
    }
  }
  if (found.empty()) {
    return Err(Status::Invalid("a bounce that names no recipient this parser can find"));
  }

  const std::string notice_status = ExtractStatusCode(notice);
  // What the notice's and the subject's wording imply, for recipients given no code.
  const std::string subject = DecodeHeaderWords(root.Header("Subject"));
  // Strong wording first (either text), then a bare "failed" (either text).
  auto words = [&](bool weak) {
    for (std::string_view text : {notice, std::string_view(subject)}) {
      const Feedback::Kind kind = KindFromWords(text, weak);
      if (kind != Feedback::Kind::kUnknown) return kind;
    }
    return Feedback::Kind::kUnknown;
  };
  const Feedback::Kind strong_kind = words(false);
  const Feedback::Kind weak_kind =
      strong_kind != Feedback::Kind::kUnknown ? strong_kind : words(true);
  std::vector<Feedback> out;
  for (Found& item : found) {
    Feedback f;
    f.source = "text";
    f.recipient = std::move(item.address);
    f.message_id = message_id;
    f.status = ExtractStatusCode(item.detail);
    // The notice's code belongs to this recipient only when it is the only one.
    if (f.status.empty() && (found.size() == 1 || item.detail.empty())) f.status = notice_status;
    f.kind = KindForStatus(f.status);
    bool delayed = !f.status.empty() && f.status[0] == '4';
    if (f.kind == Feedback::Kind::kUnknown || f.kind == Feedback::Kind::kDelivered) {
      f.kind = KindFromWords(item.detail, false);
      if (f.kind == Feedback::Kind::kUnknown) f.kind = strong_kind;
      delayed = f.kind == Feedback::Kind::kSoftBounce;
      if (f.kind == Feedback::Kind::kUnknown) f.kind = weak_kind;
    }
    f.subtype = delayed ? "delayed" : "failed";
    f.diagnostic = CleanText(item.detail, kMaxDiagnostic);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

Result<std::vector<Feedback>> ParseReport(std::string_view message, const ReportLimits& limits) {
  if (message.size() > limits.max_message_bytes) {
    return Err(Status(Code::kTooLarge, "message of " + std::to_string(message.size()) +
                                           " bytes is over the limit of " +
                                           std::to_string(limits.max_message_bytes)));
  }
  std::string lines_fixed;
  if (message.find('\n') == std::string_view::npos &&
      message.find('\r') != std::string_view::npos) {
    lines_fixed.assign(message);  // old Mac line ends: a lone CR
    std::replace(lines_fixed.begin(), lines_fixed.end(), '\r', '\n');
    message = lines_fixed;
  }
  const MimeTree tree = ParseMimeTree(message, limits.mime);
  auto parsed = [&]() -> Result<std::vector<Feedback>> {
    if (const MimeNode* part = FindPart(tree.root, {"message/feedback-report"}))
      return ParseArf(tree.root, *part, limits);
    if (std::optional<Feedback> jmrp = ParseJmrp(tree.root)) return std::vector<Feedback>{*jmrp};
    if (const MimeNode* part =
            FindPart(tree.root, {"message/delivery-status", "message/global-delivery-status"})) {
      std::vector<Feedback> out = ParseDsn(tree.root, *part, limits);
      if (!out.empty()) return out;
    }
    return ParseTextBounce(tree.root, limits);
  }();
  if (parsed) {
    const std::string report_id = NormalizeMessageId(tree.root.Header("Message-ID"));
    for (Feedback& f : *parsed) f.report_id = report_id;
  }
  return parsed;
}

}  // namespace nudge::channel
