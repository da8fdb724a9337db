#include "cli/import_command.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/client.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "core/csv.h"
#include "core/json.h"
#include "profile/list_hygiene.h"
#include "profile/normalize.h"

namespace nudge::cli {
namespace {

// Identifiers and codes stay text even when they are digits: "105" as a CRM id, a zip code.
bool KeepsText(std::string_view key) {
  if (key.ends_with("id")) return true;
  for (std::string_view part : {"zip", "postal", "code", "phone", "number"}) {
    if (key.find(part) != std::string_view::npos) return true;
  }
  return false;
}

// A cell written as a number in its plain form (no leading zeros, no plus sign, no
// thousands separators) is imported as a JSON number, so conditions such as
// `traits.employees >= 50` work; anything else stays text. So does a number that a JSON number
// (a double) would change: more than 15 digits (a 20-digit reference code), or a negative zero.
bool LooksNumeric(std::string_view v) {
  if (v.empty() || v.size() > 20) return false;
  size_t i = 0;
  if (v[0] == '-') i = 1;
  if (i >= v.size() || !isdigit(static_cast<unsigned char>(v[i]))) return false;
  if (v[i] == '0' && i + 1 < v.size() && v[i + 1] != '.') return false;
  bool dot = false, nonzero = false;
  int digits = 0;
  for (; i < v.size(); ++i) {
    if (v[i] == '.') {
      if (dot || i + 1 == v.size()) return false;
      dot = true;
    } else if (!isdigit(static_cast<unsigned char>(v[i]))) {
      return false;
    } else {
      ++digits;
      nonzero = nonzero || v[i] != '0';
    }
  }
  if (digits > 15) return false;
  return nonzero || v[0] != '-';
}

namespace fs = std::filesystem;
using profile::Column;
using profile::ColumnKind;

constexpr int kMaxBatch = 5000;              // the server's limit per request
constexpr size_t kMaxBodyBytes = 12 << 20;   // the server accepts 16 MiB per request
constexpr size_t kMaxRecordBytes = 1 << 20;  // one row of a contact list
constexpr int kRetries = 3;                  // for 503 answers

struct ImportFlags {
  std::optional<std::string> server;
  std::optional<std::string> key;
  std::string file;
  std::optional<std::string> source;
  std::vector<std::string> tags;
  std::optional<std::string> rejects;
  std::optional<std::string> flagged;
  int batch = 1000;
  bool reject_typos = false;
  bool reject_role = false;
  std::string encoding = "utf-8";
  std::vector<std::string> maps;
  bool json = false;
};

struct Counts {
  int64_t rows = 0;
  int64_t created = 0;
  int64_t updated = 0;
  int64_t merged = 0;
  int64_t rejected = 0;
  int64_t flagged = 0;
  int64_t typos = 0;  // among the flagged
  int64_t roles = 0;  // among the flagged
  int64_t bad_utf8 = 0;
  int64_t sent = 0;  // rows the server has answered for
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// A CSV written beside the input: to "<path>.partial" first, renamed into place by Commit();
// dropped if never committed, so a failed run leaves nothing half-written.
// Layout: line, reason, then the row's fields as they were in the input.
class SideFile {
 public:
  static Result<SideFile> Open(const std::string& path, const std::vector<std::string>& header,
                               char delimiter, bool bom) {
    SideFile f;
    f.path_ = path;
    f.partial_ = path + ".partial";
    f.delimiter_ = delimiter;
    f.file_.reset(std::fopen(f.partial_.c_str(), "wb"));
    if (!f.file_)
      return Err(Status::Invalid("cannot write " + f.partial_ + ": " + std::strerror(errno)));
    if (bom) std::fputs("\xEF\xBB\xBF", f.file_.get());
    std::vector<std::string> fields = {"line", "reason"};
    fields.insert(fields.end(), header.begin(), header.end());
    f.WriteFields(fields);
    return f;
  }

  SideFile() = default;
  SideFile(SideFile&&) = default;
  SideFile& operator=(SideFile&&) = default;
  ~SideFile() {
    if (file_) {
      file_.reset();
      std::remove(partial_.c_str());
    }
  }

  void Write(int64_t line, const std::string& reason, const std::vector<std::string>& row) {
    scratch_.clear();
    scratch_.push_back(std::to_string(line));
    scratch_.push_back(reason);
    scratch_.insert(scratch_.end(), row.begin(), row.end());
    WriteFields(scratch_);
    ++rows_;
  }

  Status Commit() {
    std::FILE* f = file_.release();
    const bool failed = std::ferror(f) != 0;
    if (std::fclose(f) != 0 || failed) {
      std::remove(partial_.c_str());
      return Status::Internal("cannot write " + partial_);
    }
    std::error_code ec;
    fs::rename(partial_, path_, ec);
    if (ec) return Status::Internal("cannot rename " + partial_ + ": " + ec.message());
    return Status::Ok();
  }

  const std::string& path() const { return path_; }
  int64_t rows() const { return rows_; }

 private:
  void WriteFields(const std::vector<std::string>& fields) {
    line_.clear();
    core::AppendCsvRecord(line_, fields, delimiter_);
    std::fwrite(line_.data(), 1, line_.size(), file_.get());
  }

  std::string path_, partial_;
  char delimiter_ = ',';
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::string line_;
  std::vector<std::string> scratch_;
  int64_t rows_ = 0;
};

// A row in the batch being sent, kept until the server has answered for it.
struct PendingRow {
  int64_t line = 0;
  std::vector<std::string> fields;
  std::string flag;  // why the row is flagged; empty if it is not
  bool typo = false;
  bool role = false;
};

std::string WithThousands(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// Draws "[#####-----]  45%  12.3/27.1 MB  52,310 rows/s" on stderr when it is a terminal.
class Progress {
 public:
  Progress(std::string name, uint64_t total_bytes, bool enabled)
      : name_(std::move(name)),
        total_(total_bytes),
        enabled_(enabled),
        start_(core::MonotonicMicros()),
        last_(start_) {}

  void Update(uint64_t bytes, int64_t rows, bool force = false) {
    if (!enabled_) return;
    const int64_t now = core::MonotonicMicros();
    if (!force && now - last_ < 100000) return;
    last_ = now;
    const double fraction = total_ > 0 ? std::min(1.0, double(bytes) / double(total_)) : 0.0;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    const double seconds = std::max(1e-3, double(now - start_) / 1e6);
    std::fprintf(stderr, "\r%s [%s%s] %3d%%  %.1f/%.1f MB  %s rows/s ", name_.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '-').c_str(),
                 static_cast<int>(fraction * 100), double(bytes) / 1e6, double(total_) / 1e6,
                 WithThousands(static_cast<int64_t>(double(rows) / seconds)).c_str());
    std::fflush(stderr);
  }

  void Clear() {
    if (!enabled_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }

 private:
  std::string name_;
  uint64_t total_;
  bool enabled_;
  int64_t start_;
  int64_t last_;
};

std::string_view Trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// "file:line:column: message", as compilers say it.
std::string Located(const std::string& file, const Status& s) {
  return file + ":" + (s.where().empty() ? "" : s.where() + ":") + " " + s.message();
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "nudge: %s\n", message.c_str());
  return 2;
}

class Importer {
 public:
  Importer(const ImportFlags& flags, ApiClient client)
      : flags_(flags), client_(std::move(client)), import_id_(core::NewUuid()) {}

  int Run() {
    // The input, its encoding and its header.
    auto encoding = core::ParseCsvEncoding(flags_.encoding);
    if (!encoding) return Usage(encoding.error().ToString());
    std::ifstream in(flags_.file, std::ios::binary);
    std::error_code ec;
    if (!in || fs::is_directory(flags_.file, ec))
      return Usage(
          "cannot open " + flags_.file + ": " +
          (fs::exists(flags_.file, ec) ? "not a readable file" : "no such file or directory"));
    const uint64_t size = fs::file_size(flags_.file, ec);
    core::CsvOptions options;
    options.encoding = *encoding;
    options.max_record_bytes = kMaxRecordBytes;
    options.max_field_bytes = kMaxRecordBytes;
    core::CsvReader reader(core::CsvReader::StreamSource(in), options);
    core::CsvRecord record;
    auto first = reader.Next(record);
    if (!first) return Usage(Located(flags_.file, first.error()));
    if (!*first) return Usage(flags_.file + " is empty: a header row is needed");
    if (!record.error.ok())
      return Usage(Located(flags_.file, record.error) + " (in the header row)" +
                   (*encoding == core::CsvEncoding::kUtf8 &&
                            record.error.message().find("UTF-8") != std::string::npos
                        ? "; try --encoding windows-1252"
                        : ""));
    header_ = record.fields;
    for (auto& h : header_) h = std::string(Trim(h));
    auto columns = profile::MapHeaders(header_, flags_.maps);
    if (!columns) return Usage(columns.error().ToString());
    columns_ = std::move(*columns);
    bool has_id = false;
    for (size_t i = 0; i < columns_.size(); ++i) {
      const ColumnKind k = columns_[i].kind;
      has_id |= k == ColumnKind::kEmail || k == ColumnKind::kPhone || k == ColumnKind::kUserId;
      if (k == ColumnKind::kTrait && columns_[i].key == "country") country_ = i;
    }
    if (!has_id) {
      std::string names;
      for (size_t i = 0; i < header_.size(); ++i) names += (i ? ", " : "") + header_[i];
      return Usage(flags_.file + ": no column holds an email, phone or user id (the columns are: " +
                   names + "); name one with --map \"Header=email\"");
    }

    // The side files, beside the input unless told otherwise.
    const fs::path input(flags_.file);
    const std::string stem = input.stem().string();
    const fs::path rejects_path =
        flags_.rejects ? fs::path(*flags_.rejects) : input.parent_path() / (stem + ".rejects.csv");
    const fs::path flagged_path = flags_.flagged
                                      ? fs::path(*flags_.flagged)
                                      : rejects_path.parent_path() / (stem + ".flagged.csv");
    const fs::path input_full = fs::weakly_canonical(input, ec);
    const fs::path rejects_full = fs::weakly_canonical(rejects_path, ec);
    const fs::path flagged_full = fs::weakly_canonical(flagged_path, ec);
    if (rejects_full == input_full || flagged_full == input_full || rejects_full == flagged_full)
      return Usage(
          "the rejects file, the flagged file and the input must be three different files");
    const bool bom = reader.had_bom() || *encoding != core::CsvEncoding::kUtf8;
    auto rejects = SideFile::Open(rejects_path.string(), header_, reader.delimiter(), bom);
    if (!rejects)
      return Usage(rejects.error().message() + " (choose another place with --rejects)");
    auto flagged = SideFile::Open(flagged_path.string(), header_, reader.delimiter(), bom);
    if (!flagged)
      return Usage(flagged.error().message() + " (choose another place with --flagged)");
    rejects_ = std::move(*rejects);
    flagged_ = std::move(*flagged);

    // The rows, one batch at a time.
    const std::string name = input.filename().string();
    Progress progress(name, size, isatty(STDERR_FILENO) == 1 && !flags_.json);
    const int64_t started = core::MonotonicMicros();
    StartBatch();
    for (;;) {
      auto more = reader.Next(record);
      if (!more) {
        progress.Clear();
        std::fprintf(stderr, "nudge: %s\n", Located(flags_.file, more.error()).c_str());
        return 1;
      }
      if (!*more) break;
      Status s = AddRecord(record);
      if (!s.ok()) {
        progress.Clear();
        return ServerFailed(s);
      }
      progress.Update(reader.bytes_read(), counts_.rows);
    }
    Status s = Flush();
    progress.Update(reader.bytes_read(), counts_.rows, true);
    progress.Clear();
    if (!s.ok()) return ServerFailed(s);
    for (SideFile* f : {&rejects_, &flagged_}) {
      if (Status c = f->Commit(); !c.ok()) {
        std::fprintf(stderr, "nudge: %s\n", c.message().c_str());
        return 1;
      }
    }
    PrintSummary(name, double(core::MonotonicMicros() - started) / 1e6);
    return 0;
  }

 private:
  // Validates one record and adds it to the batch (or to the rejects), sending full batches.
  Status AddRecord(const core::CsvRecord& record) {
    bool blank = true;
    for (const auto& f : record.fields) blank = blank && Trim(f).empty();
    if (blank && record.error.ok()) return Status::Ok();  // ",,,," lines of spreadsheets
    ++counts_.rows;
    if (!record.error.ok()) {
      if (record.error.message().find("UTF-8") != std::string::npos) ++counts_.bad_utf8;
      Reject(record.line, record.error.ToString(), record.fields);
      return Status::Ok();
    }
    if (record.fields.size() != columns_.size()) {
      Reject(record.line,
             "ragged row: " + std::to_string(record.fields.size()) +
                 " fields where the header has " + std::to_string(columns_.size()),
             record.fields);
      return Status::Ok();
    }

    std::string_view email, phone, user_id;
    for (size_t i = 0; i < columns_.size(); ++i) {
      const std::string_view v = Trim(record.fields[i]);
      switch (columns_[i].kind) {
        case ColumnKind::kEmail:
          email = v;
          break;
        case ColumnKind::kPhone:
          phone = v;
          break;
        case ColumnKind::kUserId:
          user_id = v;
          break;
        default:
          break;
      }
    }
    PendingRow row;
    row.line = record.line;
    if (!email.empty()) {
      auto normalized = profile::NormalizeEmail(email);
      if (!normalized) {
        Reject(record.line, "invalid email: " + normalized.error().message(), record.fields);
        return Status::Ok();
      }
      const std::string domain = normalized->substr(normalized->rfind('@') + 1);
      if (auto suggestion = profile::SuggestDomain(domain)) {
        row.typo = true;
        row.flag = "likely typo: " + domain + " -> " + *suggestion + "?";
      }
      if (profile::IsRoleAddress(*normalized)) {
        row.role = true;
        if (!row.flag.empty()) row.flag += "; ";
        row.flag += "role address: " + normalized->substr(0, normalized->rfind('@') + 1);
      }
    }
    if (!phone.empty()) {
      // The server reads a number without a country code in the row's two-letter country, else
      // in its default region, which only it knows; numbers it alone can judge are left to it.
      std::string region;
      if (country_) {
        const std::string_view c = Trim(record.fields[*country_]);
        if (c.size() == 2) region = std::string(c);
      }
      if (!region.empty() || phone.front() == '+') {
        auto normalized = profile::NormalizePhone(phone, region);
        if (!normalized) {
          Reject(record.line, "invalid phone: " + normalized.error().message(), record.fields);
          return Status::Ok();
        }
      }
    }
    if (email.empty() && phone.empty() && user_id.empty()) {
      Reject(record.line, "the row has no email, phone or user id", record.fields);
      return Status::Ok();
    }
    if ((row.typo && flags_.reject_typos) || (row.role && flags_.reject_role)) {
      Reject(record.line, row.flag, record.fields);
      return Status::Ok();
    }

    // {"line":2,"email":"...","phone":"...","user_id":"...","traits":{...}}
    row_json_.clear();
    row_json_ += "{\"line\":" + std::to_string(record.line);
    auto member = [&](const char* key, std::string_view value) {
      row_json_ += ",\"";
      row_json_ += key;
      row_json_ += "\":";
      core::AppendJsonString(row_json_, value);
    };
    if (!email.empty()) member("email", email);
    if (!phone.empty()) member("phone", phone);
    if (!user_id.empty()) member("user_id", user_id);
    row_json_ += ",\"traits\":{";
    bool first = true;
    for (size_t i = 0; i < columns_.size(); ++i) {
      const Column& c = columns_[i];
      if (c.kind != ColumnKind::kTrait && c.kind != ColumnKind::kTags) continue;
      const std::string_view v = Trim(record.fields[i]);
      if (v.empty()) continue;  // an empty cell must not erase what a contact already has
      if (!first) row_json_ += ',';
      first = false;
      core::AppendJsonString(row_json_, c.key);
      row_json_ += ':';
      if (c.kind == ColumnKind::kTags) {
        row_json_ += '[';
        bool first_tag = true;
        for (const std::string& tag : profile::SplitTags(v)) {
          if (!first_tag) row_json_ += ',';
          first_tag = false;
          core::AppendJsonString(row_json_, tag);
        }
        row_json_ += ']';
      } else if (LooksNumeric(v) && !KeepsText(c.key)) {
        row_json_ += v;  // "60" is a number; "01234" (a zip code) stays text
      } else {
        core::AppendJsonString(row_json_, v);
      }
    }
    row_json_ += "}}";

    if (!batch_.empty() && body_.size() + row_json_.size() + 2 > kMaxBodyBytes) NUDGE_TRY(Flush());
    if (!batch_.empty()) body_ += ',';
    body_ += row_json_;
    row.fields = record.fields;
    batch_.push_back(std::move(row));
    if (static_cast<int>(batch_.size()) >= flags_.batch) NUDGE_TRY(Flush());
    return Status::Ok();
  }

  void Reject(int64_t line, const std::string& reason, const std::vector<std::string>& fields) {
    ++counts_.rejected;
    rejects_.Write(line, reason, fields);
  }

  void StartBatch() {
    batch_.clear();
    body_.clear();
    body_ += "{\"import_id\":";
    core::AppendJsonString(body_, import_id_);
    body_ += ",\"source\":";
    core::AppendJsonString(body_,
                           flags_.source.value_or(fs::path(flags_.file).filename().string()));
    body_ += ",\"tags\":[";
    for (size_t i = 0; i < flags_.tags.size(); ++i) {
      if (i > 0) body_ += ',';
      core::AppendJsonString(body_, flags_.tags[i]);
    }
    body_ += "],\"contacts\":[";
  }

  // Sends the batch and sorts the server's answers into the counts and the side files.
  Status Flush() {
    if (batch_.empty()) return Status::Ok();
    body_ += "]}";
    Result<ApiResponse> response = Err(Status::Internal("not sent"));
    for (int attempt = 0;; ++attempt) {
      response = client_.Call("POST", "/api/v1/contacts/import", body_);
      if (!response || response->status != 503 || attempt + 1 >= kRetries) break;
      std::this_thread::sleep_for(std::chrono::seconds(1 << attempt));
    }
    if (!response) return response.error();
    if (response->status < 200 || response->status >= 300) {
      std::string message = "HTTP " + std::to_string(response->status);
      auto j = nlohmann::json::parse(response->body, nullptr, false);
      if (j.is_object() && j.contains("error") && j["error"].is_string())
        message += ": " + j["error"].get<std::string>();
      return Status(Code::kUnavailable, message);
    }
    auto answer = nlohmann::json::parse(response->body, nullptr, false);
    if (!answer.is_object() || !answer.contains("results") || !answer["results"].is_array() ||
        answer["results"].size() != batch_.size())
      return Status::Internal("the server's answer does not have one result per row");
    const auto& results = answer["results"];
    for (size_t i = 0; i < batch_.size(); ++i) {
      const PendingRow& row = batch_[i];
      const auto& r = results[i];
      if (!r.is_object() || r.value("line", int64_t{-1}) != row.line)
        return Status::Internal("the server's answer does not match the rows sent");
      const std::string outcome = r.value("outcome", "");
      const int64_t contact = r.value("contact_id", int64_t{0});
      if (outcome == "rejected") {
        Reject(row.line, r.value("reason", std::string("rejected by the server")), row.fields);
        continue;
      }
      if (outcome == "created") {
        ++counts_.created;
        Seen(contact);
      } else if (outcome == "merged" || (outcome == "updated" && Seen(contact))) {
        ++counts_.merged;  // a second row for a contact this import already wrote
      } else if (outcome == "updated") {
        ++counts_.updated;
      } else {
        return Status::Internal("the server answered an unknown outcome '" + outcome + "'");
      }
      if (!row.flag.empty()) {
        ++counts_.flagged;
        counts_.typos += row.typo;
        counts_.roles += row.role;
        flagged_.Write(row.line, row.flag, row.fields);
      }
    }
    counts_.sent += static_cast<int64_t>(batch_.size());
    StartBatch();
    return Status::Ok();
  }

  // Marks a contact as written by this run; true if it already was. A bitmap over contact ids
  // (dense integers) keeps this at one bit per contact, and at most 16 MiB.
  bool Seen(int64_t contact) {
    if (contact <= 0 || contact >= (int64_t{1} << 27)) return false;
    const auto i = static_cast<size_t>(contact);
    if (seen_.size() <= i) seen_.resize(std::max(i + 1, seen_.size() * 2));
    const bool was = seen_[i];
    seen_[i] = true;
    return was;
  }

  int ServerFailed(const Status& s) {
    std::fprintf(stderr,
                 "nudge: the import stopped: %s\n"
                 "  %s rows were sent and imported before; the batch that failed starts at line "
                 "%s. Importing the same file again is safe (rows already imported are then "
                 "reported as updated).\n",
                 s.ToString().c_str(), WithThousands(counts_.sent).c_str(),
                 batch_.empty() ? "?" : std::to_string(batch_.front().line).c_str());
    return 1;
  }

  void PrintSummary(const std::string& name, double seconds) {
    if (flags_.json) {
      nlohmann::json j{{"file", flags_.file},
                       {"import_id", import_id_},
                       {"rows", counts_.rows},
                       {"new", counts_.created},
                       {"updated", counts_.updated},
                       {"merged", counts_.merged},
                       {"rejected", counts_.rejected},
                       {"flagged", counts_.flagged},
                       {"flagged_typos", counts_.typos},
                       {"flagged_role", counts_.roles},
                       {"rejects_file", rejects_.path()},
                       {"flagged_file", flagged_.path()},
                       {"seconds", seconds}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      auto line = [](const char* label, int64_t n, const std::string& note) {
        std::printf("  %-9s %10s%s\n", label, WithThousands(n).c_str(), note.c_str());
      };
      std::printf("Imported %s: %s rows in %.1f s\n", name.c_str(),
                  WithThousands(counts_.rows).c_str(), seconds);
      line("new", counts_.created, "");
      line("updated", counts_.updated, "");
      line("merged", counts_.merged, "  (duplicates inside the file)");
      line("rejected", counts_.rejected,
           counts_.rejected ? "  -> " + rejects_.path() : std::string());
      line("flagged", counts_.flagged,
           counts_.flagged
               ? "  (" + WithThousands(counts_.typos) +
                     (counts_.typos == 1 ? " likely typo, " : " likely typos, ") +
                     WithThousands(counts_.roles) +
                     (counts_.roles == 1 ? " role address) -> " : " role addresses) -> ") +
                     flagged_.path()
               : std::string());
    }
    if (counts_.bad_utf8 > 0)
      std::fprintf(stderr,
                   "note: %s %s not valid UTF-8; if the file was saved as latin1 or "
                   "windows-1252, import it again with --encoding windows-1252\n",
                   WithThousands(counts_.bad_utf8).c_str(),
                   counts_.bad_utf8 == 1 ? "row is" : "rows are");
  }

  const ImportFlags& flags_;
  ApiClient client_;
  const std::string import_id_;
  std::vector<std::string> header_;
  std::vector<Column> columns_;
  std::optional<size_t> country_;  // the column holding the two-letter country, if any
  SideFile rejects_, flagged_;
  std::vector<PendingRow> batch_;
  std::string body_;
  std::string row_json_;
  std::vector<bool> seen_;
  Counts counts_;
};

int RunImport(const ImportFlags& flags) {
  std::error_code ec;
  if (!fs::exists(flags.file, ec))
    return Usage("cannot open " + flags.file + ": no such file or directory");
  if (flags.source && !core::IsValidUtf8(*flags.source))
    return Usage("--source is not valid UTF-8");
  for (const auto& t : flags.tags) {
    if (!core::IsValidUtf8(t) || Trim(t).empty())
      return Usage("--tag '" + t + "' is empty or not valid UTF-8");
  }
  for (const auto& m : flags.maps) {
    if (!core::IsValidUtf8(m)) return Usage("--map '" + m + "' is not valid UTF-8");
  }
  auto client = ApiClient::Make(flags.server, flags.key);
  if (!client) return Usage(client.error().ToString());
  Importer importer(flags, std::move(*client));
  return importer.Run();
}

}  // namespace

void AddImportCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<ImportFlags>();
  auto* import_cmd = app.add_subcommand("import", "import data into nudge");
  import_cmd->require_subcommand(1);
  auto* contacts = import_cmd->add_subcommand(
      "contacts",
      "import a contact list (CSV exported from Mailchimp, HubSpot, a spreadsheet, ...) through "
      "the admin API");
  contacts->add_option("file", flags->file, "the CSV file")->required();
  contacts->add_option("--server", flags->server,
                       "nudge's URL (default $NUDGE_SERVER or http://127.0.0.1:8080)");
  contacts->add_option("--key", flags->key, "admin key (default $NUDGE_ADMIN_KEY)");
  contacts->add_option("--source", flags->source,
                       "recorded as the source of new contacts (default: the file's name)");
  contacts->add_option("--tag", flags->tags, "a tag added to every imported contact (repeatable)")
      ->allow_extra_args(false);
  contacts->add_option("--rejects", flags->rejects,
                       "where rejected rows go (default: <name>.rejects.csv beside the file)");
  contacts->add_option("--flagged", flags->flagged,
                       "where flagged rows go (default: <name>.flagged.csv beside the rejects)");
  contacts->add_option("--batch", flags->batch, "rows per request (default 1000)")
      ->check(CLI::Range(1, kMaxBatch));
  contacts->add_flag("--reject-typos", flags->reject_typos,
                     "reject addresses whose domain looks like a typo (gmial.com) instead of "
                     "flagging them");
  contacts->add_flag("--reject-role", flags->reject_role,
                     "reject role addresses (info@, support@) instead of flagging them");
  contacts->add_option("--encoding", flags->encoding,
                       "the file's encoding: utf-8 (default), latin1 or windows-1252");
  contacts
      ->add_option("--map", flags->maps,
                   "\"Header=field\": put a column in email, phone, user_id, tags, a trait, "
                   "or ignore it (repeatable)")
      ->allow_extra_args(false);
  contacts->add_flag("--json", flags->json, "print the summary as JSON");
  contacts->callback([flags, &exit_code] { exit_code = RunImport(*flags); });
}

}  // namespace nudge::cli
