// journeys_bench: the journey engine at scale. Prints one JSON object on stdout (progress on
// stderr). bench/journeys.sh runs it.
//
//   journeys_bench [--contacts N] [--rate EVENTS_PER_S] [--tick-ms MS] [--probes N]
//                  [--probe-rate EVENTS_PER_S] [--probe-wait-s S] [--fire-step-s S]
//                  [--tmpdir DIR] [--keep] [--seed N] [--save-part1 DIR | --part2-from DIR]
//
// The aims: event → outbox p99 ≤ 5 ms at 10k events/s; ≥ 100k timer fires/s;
// ≤ 128 B per pending timer. Every loop is bounded; nothing leaves the machine.
//
// 1. latency (a forked child, real clock, wired as `nudge serve` wires it: SQLite store with
//    group commit, ContactCache, segment::Engine and journey::Engine with their background
//    threads, profile::Applier with the segment engine as observer and journeys downstream).
//    10 journeys, each triggered by an event (5 of them with a `where` filter, two of them on
//    the same event), each starting with a `send` followed by waits of hours or days
//    (first-email → first-wait → second-email → second-wait → last-email). N contacts each send
//    one trigger event: a Segment message (track or page, ~600 bytes, parsed by the ingest
//    parser) submitted as its own store.Write, as /v1/track does, paced at --rate (a tick of
//    --tick-ms submits rate×tick messages; open loop: a slow engine builds a queue, it does
//    not slow the feeder). Latency = Write() call → its done callback (after the commit that
//    holds the event, the contact, the journey instance and its outbox message).
//    Then --probes more events of an 11th journey (send → wait --probe-wait-s → send) for
//    existing contacts: their timers fire on the real clock, with the N first-wave timers
//    pending beside them; lateness = (step log time of the wait's completion) − (entry time +
//    wait), also the engine's nudge_journey_timer_lateness_seconds histogram.
//    Checks (SQL, afterwards): per journey, instances = contacts sent its trigger, one
//    first-email message per instance, every instance waiting at first-wait; client events
//    stored = events sent.
//    Reads, then: the first page of one journey's instances (51 rows, as the admin API reads
//    them), of its messages, and of delivery's due messages (100), through the store, the
//    median of 21 each; beside the same page of messages by primary key in plain SQLite.
// 2. pending timers (this process, fresh: the store of part 1 re-opened). Disk: journey_instances
//    table and index bytes per active instance (dbstat). Memory: heap in use (mallinfo2) and
//    RSS (after malloc_trim) before and after journey::Engine::Load() brings the N instances
//    and their timers into memory, divided by N; beside an estimate from the structures'
//    layout. Fires: the engines on a core::VirtualClock (no threads); the clock jumps to the
//    next due timer + --fire-step-s at a time and RunDue() runs until nothing is due, until
//    every first-wave timer fired (each fire: the instance leaves first-wait, second-email
//    writes its outbox row and step log, the instance waits at second-wait). fires/s = fires /
//    wall time of those RunDue calls. Checked: one queued second-email per instance.
// 3. reference: raw SQLite (sqlite3 C API, prepared INSERTs, WAL, synchronous=FULL, one
//    transaction per 2000 fires as RunDue writes them) inserting the same number of rows into
//    tables with the same DDL as journey_instances, messages, journey_step_log (and events, for
//    the variant that also writes the derived events the engine stores), the rows sampled
//    from what the engine wrote: rows/s and "fires/s" at the storage's own limit.
//
// --save-part1 DIR copies the store part 1 leaves, and its results, into DIR; --part2-from DIR
// skips part 1 and runs parts 2 and 3 on a copy of them (a change to the fire path measured on
// the same rows, without part 1's half hour at a million contacts; the copy leaves DIR as it was).
//
// The exit status is 1 when a check failed ("ok": false, "problems" says which).
#include <malloc.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "core/clock.h"
#include "core/huge_pages.h"
#include "core/metrics.h"
#include "ingest/parser.h"
#include "journey/engine.h"
#include "profile/applier.h"
#include "profile/contact_cache.h"
#include "segment/engine.h"
#include "store/sqlite/db.h"
#include "store/store.h"

namespace nudge::bench {
namespace {

using json = nlohmann::ordered_json;
using core::Millis;
using store::WorkspaceId;

constexpr Millis kSecond = 1000, kHour = 3600 * kSecond, kDay = 24 * kHour;

// ---------------------------------------------------------------------------------------------
// Parameters

struct Args {
  int64_t contacts = 1'000'000;
  int64_t rate = 10'000;  // events/s, part 1
  int tick_ms = 1;
  int64_t probes = -1;  // -1: min(100000, contacts / 10)
  int64_t probe_rate = 20'000;
  int probe_wait_s = 45;
  int fire_step_s = 60;
  int64_t low_rate = 2'000;  // the latency check below saturation
  int64_t low_events = -1;   // -1: min(20000, contacts)
  std::string tmpdir = "/var/tmp";
  bool keep = false;
  uint64_t seed = 20261102;
  std::string save_part1;  // copy the store and part 1's result here after part 1
  std::string part2_from;  // skip part 1: start from a copy of what --save-part1 saved
};

// ---------------------------------------------------------------------------------------------
// Helpers

double Mono() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double ProcessCpu() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// CPU seconds of each thread of this process (utime + stime from /proc/self/task/*/stat).
std::map<int, double> ThreadCpu() {
  std::map<int, double> out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(e.path() / "stat");
    std::string text;
    std::getline(in, text);
    const size_t paren = text.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(text.substr(paren + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::atof(field.c_str());
      if (i == 15) stime = std::atof(field.c_str());
    }
    out[std::atoi(e.path().filename().c_str())] = (utime + stime) / tick;
  }
  return out;
}

double BusiestThreadDelta(const std::map<int, double>& before, const std::map<int, double>& after) {
  double best = 0;
  for (const auto& [tid, cpu] : after) {
    auto it = before.find(tid);
    best = std::max(best, cpu - (it == before.end() ? 0.0 : it->second));
  }
  return best;
}

// Heap bytes in use (all arenas, mmapped chunks included), after giving free pages back.
struct MemPoint {
  int64_t heap = 0, rss = 0;
};
MemPoint Mem() {
  malloc_trim(0);
  const struct mallinfo2 mi = mallinfo2();
  return {static_cast<int64_t>(mi.uordblks + mi.hblkhd), ProcStatusBytes("VmRSS")};
}

double Round(double v, int digits = 4) {
  if (v == 0 || !std::isfinite(v)) return v;
  const double mag =
      std::pow(10.0, digits - 1 - static_cast<int>(std::floor(std::log10(std::fabs(v)))));
  return std::round(v * mag) / mag;
}

std::string g_dir;  // the temporary directory (removed by the parent unless --keep)
bool g_keep = false;
bool g_child = false;
std::string g_child_out;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "journeys_bench%s: %s\n", g_child ? " (child)" : "", what.c_str());
  json out{{"benchmark", "journeys"}, {"ok", false}, {"error", what}};
  if (g_child) {
    std::ofstream(g_child_out) << out.dump() << "\n";
    std::_Exit(1);
  }
  if (!g_dir.empty() && !g_keep) {
    std::error_code ec;
    std::filesystem::remove_all(g_dir, ec);
  }
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
  std::_Exit(1);
}
void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

void Log(const char* fmt, auto... args) {
  std::fprintf(stderr, "journeys: ");
  std::fprintf(stderr, fmt, args...);
  std::fprintf(stderr, "\n");
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

// Nearest-rank percentiles of microsecond samples, in ms.
json Percentiles(std::vector<int64_t> us) {
  json out = json::object();
  if (us.empty()) return out;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(us.size())));
    i = std::clamp<size_t>(i, 1, us.size()) - 1;
    return Round(static_cast<double>(us[i]) / 1000.0);
  };
  double sum = 0;
  for (int64_t v : us) sum += static_cast<double>(v);
  out["count"] = us.size();
  out["p50"] = at(0.50);
  out["p90"] = at(0.90);
  out["p99"] = at(0.99);
  out["p999"] = at(0.999);
  out["max"] = Round(static_cast<double>(us.back()) / 1000.0);
  out["mean"] = Round(sum / static_cast<double>(us.size()) / 1000.0);
  return out;
}

json HistogramJson(core::Histogram& h, double scale = 1000.0) {
  const auto snap = h.Read();
  json buckets = json::object();
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    std::ostringstream k;
    k << h.bounds()[i];
    buckets[k.str()] = snap.cumulative[i];
  }
  buckets["+Inf"] = snap.count;
  json out{{"count", snap.count},
           {"mean_ms", snap.count ? Round(snap.sum / static_cast<double>(snap.count) * scale) : 0},
           {"p50_ms", Round(h.Quantile(0.5) * scale)},
           {"p99_ms", Round(h.Quantile(0.99) * scale)},
           {"cumulative_le_seconds", buckets}};
  return out;
}

// ---------------------------------------------------------------------------------------------
// Raw SQLite helpers (checks and the reference)

struct Sql {
  sqlite3* db = nullptr;
  explicit Sql(const std::string& path, bool read_only) {
    const int flags =
        read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK)
      Die("cannot open " + path + ": " + sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 10000);
  }
  ~Sql() { sqlite3_close_v2(db); }
  Sql(const Sql&) = delete;
  Sql& operator=(const Sql&) = delete;

  void Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string e = err ? err : "?";
      sqlite3_free(err);
      Die("sql: " + e + " in: " + sql.substr(0, 200));
    }
  }
  sqlite3_stmt* Prepare(const std::string& sql, bool fatal = true) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      if (!fatal) return nullptr;
      Die("sql: " + std::string(sqlite3_errmsg(db)) + " in: " + sql.substr(0, 200));
    }
    return st;
  }
  // Runs a query, calling fn for each row.
  template <typename Fn>
  void Rows(const std::string& sql, Fn fn) {
    sqlite3_stmt* st = Prepare(sql);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) fn(st);
    if (rc != SQLITE_DONE) Die("sql: " + std::string(sqlite3_errmsg(db)) + " in: " + sql);
    sqlite3_finalize(st);
  }
  int64_t Int(const std::string& sql) {
    int64_t v = 0;
    Rows(sql, [&](sqlite3_stmt* st) { v = sqlite3_column_int64(st, 0); });
    return v;
  }
};

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// ---------------------------------------------------------------------------------------------
// The journeys and their trigger events

struct JourneySpec {
  const char* id;
  const char* trigger;  // YAML of the trigger
  const char* extra;    // more YAML lines (entry, exit_when)
  const char* first_wait;
  Millis first_wait_ms;
  const char* second_wait;
  // The trigger event: endpoint and fields.
  bool page;
  const char* event;  // track: the event name
  const char* props;  // properties JSON (without braces); %d gets a number
  const char* path;
  const char* title;
};

// Second waits are all ≥ 4d, so that none falls due while the first wave (≤ 3d) fires.
const JourneySpec kJourneys[] = {
    {"welcome", "{ event: Signed Up }", "entry: once", "2d", 2 * kDay, "5d", false, "Signed Up",
     R"("plan":"trial","method":"email","referrer_code":"FRIEND-2024","newsletter":true,"n":%d)",
     "/signup", "Create your account"},
    {"pricing-follow-up", "\n  event: Page Viewed\n  where: properties.path == \"/pricing\"",
     "entry: once_per 30d\nexit_when: event \"Demo Booked\"", "6h", 6 * kHour, "4d", true, "",
     R"("path":"/pricing","url":"https://www.example.com/pricing","title":"Pricing | nudge","referrer":"https://www.google.com/","n":%d)",
     "/pricing", "Pricing | nudge"},
    {"docs-onboarding", "\n  event: Page Viewed\n  where: properties.path == \"/docs\"",
     "entry: once", "1d", kDay, "7d", true, "",
     R"("path":"/docs","url":"https://www.example.com/docs","title":"Docs | nudge","referrer":"https://www.example.com/","n":%d)",
     "/docs", "Docs | nudge"},
    {"abandoned-cart", "{ event: Checkout Started }",
     "entry: once_per 7d\nexit_when: event \"Order Completed\"", "4h", 4 * kHour, "4d", false,
     "Checkout Started",
     R"("order_id":"ord-%d","value":848.99,"revenue":848.99,"currency":"USD","coupon":"SPRING10","items":2)",
     "/checkout", "Checkout | Shop"},
    {"trial-upgrade", "\n  event: Trial Started\n  where: properties.plan == \"pro\"",
     "entry: once", "12h", 12 * kHour, "5d", false, "Trial Started",
     R"("plan":"pro","seats":5,"source":"pricing-page","trial_days":14,"n":%d)", "/signup/pro",
     "Start your trial"},
    {"demo-video-follow-up", "\n  event: Video Progress\n  where: properties.percent >= 75",
     "entry: once\nexit_when: event \"Demo Booked\"", "3h", 3 * kHour, "4d", false,
     "Video Progress",
     R"("video_id":"vid-%d","title":"Product demo: journeys in 5 minutes","percent":80,"position":240,"length":300)",
     "/demo", "Watch the demo | nudge"},
    {"webinar-reminder", "{ event: Webinar Registered }", "entry: once", "1d", kDay, "6d", false,
     "Webinar Registered",
     R"("webinar_id":"web-%d","title":"Behavioural triggers 101","starts_at":"2026-12-01T16:00:00Z")",
     "/webinars/triggers-101", "Webinar | nudge"},
    {"post-purchase", "\n  event: Order Completed\n  where: properties.revenue >= 100",
     "entry: every_time", "3d", 3 * kDay, "7d", false, "Order Completed",
     R"("order_id":"ord-%d","total":764.09,"revenue":764.09,"shipping":0,"tax":61.2,"currency":"USD")",
     "/checkout/thank-you", "Thank you | Shop"},
    {"feature-adoption",
     "\n  event: Feature Used\n  where: properties.feature in [\"export\", \"api\"]", "entry: once",
     "2h", 2 * kHour, "4d", false, "Feature Used",
     R"("feature":"export","workspace_id":"ws-%d","plan":"growth")", "/app/export",
     "Export | nudge"},
    {"whitepaper", "{ event: Whitepaper Downloaded }", "entry: once", "8h", 8 * kHour, "5d", false,
     "Whitepaper Downloaded",
     R"("asset":"state-of-lifecycle-marketing-2026","format":"pdf","asset_id":%d)",
     "/resources/lifecycle-report", "The lifecycle report | nudge"},
};
constexpr int kNumJourneys = static_cast<int>(std::size(kJourneys));
constexpr const char* kProbeId = "lateness-probe";

std::string JourneyYaml(const JourneySpec& j) {
  std::string y = std::string("id: ") + j.id + "\nname: " + j.id + "\ngoal: benchmark\n";
  y += std::string("trigger: ") + j.trigger + "\n" + j.extra + "\n";
  y += "steps:\n";
  y += std::string("  - id: first-email\n    send: { channel: email, template: ") + j.id + "-1 }\n";
  y += std::string("  - id: first-wait\n    wait: ") + j.first_wait + "\n";
  y +=
      std::string("  - id: second-email\n    send: { channel: email, template: ") + j.id + "-2 }\n";
  y += std::string("  - id: second-wait\n    wait: ") + j.second_wait + "\n";
  y += std::string("  - id: last-email\n    send: { channel: email, template: ") + j.id + "-3 }\n";
  return y;
}

std::string ProbeYaml(int wait_s) {
  return "id: lateness-probe\nname: timer lateness probe\ntrigger: { event: Lateness Probe }\n"
         "entry: every_time\nsteps:\n"
         "  - id: probe-email\n    send: { channel: email, template: probe-1 }\n"
         "  - id: pause\n    wait: " +
         std::to_string(wait_s) +
         "s\n"
         "  - id: after-wait\n    send: { channel: email, template: probe-2 }\n";
}

std::string LatencyCheckYaml() {
  return "id: latency-check\nname: latency below saturation\n"
         "trigger: { event: Newsletter Subscribed }\nentry: every_time\nsteps:\n"
         "  - id: confirm-email\n    send: { channel: email, template: confirm }\n";
}

const char* kAgents[] = {
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
};

// A Segment message (the body of /v1/track or /v1/page) for contact `user`.
// `extra`: a named event of the probe or latency-check journeys instead of j's trigger.
std::string MessageBody(const JourneySpec* j, int64_t user, int64_t seq, const std::string& run,
                        const char* extra = nullptr) {
  const bool probe = extra != nullptr;
  char props[512];
  std::string out;
  out.reserve(900);
  out += R"({"userId":"u)" + std::to_string(user) + R"(","messageId":")" + run + "-" +
         std::to_string(seq) + "\",";
  if (probe) {
    out += std::string(R"("event":")") + extra + R"(","properties":{"seq":)" + std::to_string(seq) +
           "},";
  } else {
    std::snprintf(props, sizeof props, j->props, static_cast<int>(seq % 1000000));
    if (j->page)
      out += std::string(R"("name":")") + j->title + R"(","properties":{)" + props + "},";
    else
      out += std::string(R"("event":")") + j->event + R"(","properties":{)" + props + "},";
  }
  const std::string path = probe ? "/probe" : j->path;
  const std::string title = probe ? "Probe" : j->title;
  char ip[32];
  std::snprintf(ip, sizeof ip, "203.0.%d.%d", static_cast<int>(seq * 7 % 256),
                static_cast<int>(seq * 13 % 254 + 1));
  out += std::string(R"("context":{"ip":")") + ip + R"(","userAgent":")" +
         kAgents[seq % std::size(kAgents)] + R"(","page":{"path":")" + path +
         R"(","url":"https://www.example.com)" + path + R"(","title":")" + title +
         R"("},"campaign":{"name":"spring_sale","source":"newsletter","medium":"email"},)" +
         R"("library":{"name":"analytics.js","version":"4.1.0"}}})";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Feeding messages through the Applier in store writes, paced

struct FeedResult {
  std::vector<int64_t> latency_us;
  int64_t failed = 0;
  double submit_seconds = 0;    // first to last submission
  double complete_seconds = 0;  // first submission to last commit
  double max_feeder_lag_ms = 0;
  double cpu_seconds = 0;                 // the whole process during the feed
  double busiest_thread_cpu_seconds = 0;  // the store's writer thread, in practice
  std::string first_error;
};

// Submits `count` messages (body(i) for i in [0, count)) at `rate`/s, one store write each,
// `rate * tick_ms / 1000` per tick; waits for every commit (bounded by `timeout_s`).
template <typename BodyFn>
FeedResult Feed(store::Store& st, const profile::Applier& applier, WorkspaceId ws,
                const core::Clock& clock, int64_t count, int64_t rate, int tick_ms, BodyFn body_of,
                double timeout_s) {
  FeedResult r;
  r.latency_us.assign(static_cast<size_t>(count), -1);
  std::atomic<int64_t> done{0}, failed{0};
  std::mutex err_mutex;
  const int64_t per_tick = std::max<int64_t>(1, rate * tick_ms / 1000);
  const double tick = static_cast<double>(per_tick) / static_cast<double>(rate);
  const double cpu0 = ProcessCpu();
  const auto threads0 = ThreadCpu();
  const double start = Mono() + 0.02;
  double last_submit = start;
  int64_t i = 0;
  for (int64_t k = 0; i < count; ++k) {
    const double target = start + static_cast<double>(k) * tick;
    const double now = Mono();
    if (target > now) std::this_thread::sleep_for(std::chrono::duration<double>(target - now));
    r.max_feeder_lag_ms = std::max(r.max_feeder_lag_ms, (Mono() - target) * 1000.0);
    for (int64_t n = 0; n < per_tick && i < count; ++n, ++i) {
      const auto [text, page] = body_of(i);
      auto parsed = ingest::ParseRequest(page ? ingest::Endpoint::kPage : ingest::Endpoint::kTrack,
                                         text, clock.NowMillis());
      if (!parsed) Die("the ingest parser refused a message: " + parsed.error().ToString());
      auto msgs = std::make_shared<std::vector<ingest::Message>>(std::move(parsed->messages));
      const int64_t t0 = core::MonotonicMicros();
      st.Write(
          [&applier, ws, msgs](store::WriteTxn& txn) -> Status {
            NUDGE_ASSIGN_OR_RETURN(auto applied, applier.Apply(txn, ws, *msgs));
            (void)applied;
            return Status::Ok();
          },
          [&r, &done, &failed, &err_mutex, t0, i](Status s) {
            r.latency_us[static_cast<size_t>(i)] = core::MonotonicMicros() - t0;
            if (!s.ok()) {
              if (failed.fetch_add(1) == 0) {
                std::lock_guard lock(err_mutex);
                r.first_error = s.ToString();
              }
            }
            done.fetch_add(1, std::memory_order_release);
          },
          store::Store::Isolation::kWithGroup);  // as the ingest pipeline writes
    }
    last_submit = Mono();
  }
  r.submit_seconds = last_submit - start;
  const double deadline = Mono() + timeout_s;
  while (done.load(std::memory_order_acquire) < count && Mono() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (done.load() < count)
    Die("only " + std::to_string(done.load()) + " of " + std::to_string(count) +
        " writes committed " + std::to_string(timeout_s) + " s after the last submission");
  r.complete_seconds = Mono() - start;
  r.cpu_seconds = ProcessCpu() - cpu0;
  r.busiest_thread_cpu_seconds = BusiestThreadDelta(threads0, ThreadCpu());
  r.failed = failed.load();
  return r;
}

json FeedJson(const FeedResult& f, int64_t count, int64_t rate) {
  json out;
  out["events"] = count;
  out["target_events_per_s"] = rate;
  out["submitted_events_per_s"] =
      Round(static_cast<double>(count) / std::max(1e-9, f.submit_seconds));
  out["committed_events_per_s"] =
      Round(static_cast<double>(count) / std::max(1e-9, f.complete_seconds));
  out["latency_ms"] = Percentiles(f.latency_us);
  out["failed_writes"] = f.failed;
  if (!f.first_error.empty()) out["first_error"] = f.first_error;
  out["max_feeder_lag_ms"] = Round(f.max_feeder_lag_ms);
  out["cpu_seconds"] = Round(f.cpu_seconds);
  out["cpu_us_per_event"] = Round(f.cpu_seconds * 1e6 / static_cast<double>(count));
  out["busiest_thread_busy_fraction"] =
      Round(f.busiest_thread_cpu_seconds / std::max(1e-9, f.complete_seconds));
  out["busiest_thread_cpu_us_per_event"] =
      Round(f.busiest_thread_cpu_seconds * 1e6 / static_cast<double>(count));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Part 1 (in a child process): latency at the paced rate, then timer lateness on the real clock

std::vector<int> AssignJourneys(int64_t contacts, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> out(static_cast<size_t>(contacts));
  for (auto& j : out) j = static_cast<int>(rng.Next() % kNumJourneys);
  return out;
}

std::map<std::string, int64_t> TableCounts(Sql& db) {
  std::map<std::string, int64_t> out;
  for (const char* t : {"contacts", "events", "journey_instances", "journey_step_log", "messages",
                        "stage_history", "segment_members", "identities"})
    out[t] = db.Int(std::string("SELECT count(*) FROM ") + t);
  return out;
}

json DiskPerInstance(const std::string& db_path, int64_t instances);

void RunPart1(const Args& a, const std::string& db_path, const std::string& run) {
  const std::vector<int> journey_of = AssignJourneys(a.contacts, a.seed);
  core::SystemClock clock;
  core::MetricsRegistry metrics;
  auto opened = store::OpenSqliteStore({.path = db_path, .metrics = &metrics});
  if (!opened) Die("open the store: " + opened.error().ToString());
  store::Store& st = **opened;
  WorkspaceId ws = 0;
  Check(st.WriteSync([&](store::WriteTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(ws, t.InsertWorkspace({0, "bench", std::string(64, 'a'),
                                                  std::string(64, 'b'), clock.NowMillis()}));
    return Status::Ok();
  }),
        "create the workspace");
  profile::ContactCache cache;
  segment::Engine segments(st, cache, clock, &metrics);
  Check(segments.Load(), "segments.Load");
  journey::Engine journeys(st, segments, cache, clock, &metrics);
  segments.SetDownstream(&journeys);
  Check(journeys.Load(), "journeys.Load");
  profile::Applier applier(profile::ProfileOptions{}, &segments);
  for (const auto& j : kJourneys) {
    auto put = journeys.PutJourney(ws, JourneyYaml(j), std::string("journeys/") + j.id + ".yaml",
                                   std::nullopt);
    if (!put) Die(std::string("PutJourney ") + j.id + ": " + put.error().ToString());
  }
  segments.WaitIdle();

  json out;
  out["load_average_before"] = LoadAvg();
  const Millis part1_started = clock.NowMillis();
  Log("part 1: %lld trigger events at %lld/s (one store write each)",
      static_cast<long long>(a.contacts), static_cast<long long>(a.rate));
  auto& commit_h = metrics.GetHistogram("nudge_store_commit_seconds", "", {});
  auto& group_h = metrics.GetHistogram("nudge_store_commit_group_writes", "", {});
  const auto commits_before = commit_h.Read();
  const auto groups_before = group_h.Read();
  FeedResult feed = Feed(
      st, applier, ws, clock, a.contacts, a.rate, a.tick_ms,
      [&](int64_t i) {
        const JourneySpec* j = &kJourneys[journey_of[static_cast<size_t>(i)]];
        return std::make_pair(MessageBody(j, i, i, run), j->page);
      },
      600.0);
  json lat = FeedJson(feed, a.contacts, a.rate);
  {
    const auto c = commit_h.Read();
    const auto g = group_h.Read();
    const double commits = static_cast<double>(c.count - commits_before.count);
    lat["store_commits"] = c.count - commits_before.count;
    lat["store_group_ms_mean"] = Round(commits ? (c.sum - commits_before.sum) / commits * 1000 : 0);
    lat["store_group_ms_p99"] = Round(commit_h.Quantile(0.99) * 1000);
    lat["writes_per_commit_mean"] =
        Round(commits ? static_cast<double>(g.sum - groups_before.sum) / commits : 0);
    lat["store_group_note"] =
        "nudge_store_commit_seconds: one group of writes from BEGIN to COMMIT, the writes' "
        "work (applier, segments, journeys) and the fsync included";
  }
  const double committed = lat.value("committed_events_per_s", 0.0);
  lat["sustained"] = committed >= 0.98 * static_cast<double>(a.rate);
  if (!lat["sustained"].get<bool>())
    lat["sustained_note"] =
        "the engine committed fewer events/s than were offered: a queue built up and the "
        "latency above is mostly time spent in it; see latency_below_saturation";
  out["latency"] = lat;
  const Millis part1_ended = clock.NowMillis();
  Log("part 1: p50 %.3f ms, p99 %.3f ms, max %.3f ms; %.0f events/s committed",
      lat["latency_ms"].value("p50", 0.0), lat["latency_ms"].value("p99", 0.0),
      lat["latency_ms"].value("max", 0.0), lat.value("committed_events_per_s", 0.0));

  // Rows the entries wrote.
  Sql db(db_path, /*read_only=*/true);
  const auto counts_after_entries = TableCounts(db);
  {
    json rows = json::object();
    for (const auto& [t, n] : counts_after_entries)
      rows[t] = Round(static_cast<double>(n) / static_cast<double>(a.contacts));
    out["rows_per_trigger_event"] = rows;
  }

  // Disk per pending timer, now that every instance waits at first-wait.
  Log("part 2 (disk): journey_instances bytes per pending timer (dbstat)");
  out["disk"] = DiskPerInstance(db_path, a.contacts);

  // The probes' wait: at least --probe-wait-s, and long enough for all of them to be stored
  // (at the rate part 1 reached) before the first one wakes, so that the timers fire on an
  // otherwise idle engine and come due at the rate the probes were stored.
  const double entry_capacity = std::max(1.0, lat.value("committed_events_per_s", 1.0));
  const int probe_wait_s = static_cast<int>(std::max<double>(
      a.probe_wait_s,
      std::ceil(static_cast<double>(a.probes) /
                    std::min(static_cast<double>(a.probe_rate), 0.9 * entry_capacity) +
                10)));

  // Two more journeys, put now (as an admin would): the 10 above saw only themselves.
  for (const auto& [id, yaml] :
       {std::pair<std::string, std::string>{"latency-check", LatencyCheckYaml()},
        {kProbeId, ProbeYaml(probe_wait_s)}}) {
    auto put = journeys.PutJourney(ws, yaml, "journeys/" + id + ".yaml", std::nullopt);
    if (!put) Die("PutJourney " + id + ": " + put.error().ToString());
  }
  segments.WaitIdle();

  // Latency below saturation: a send-and-end journey for existing contacts, N timers pending.
  if (a.low_events > 0) {
    Log("latency below saturation: %lld events at %lld/s", static_cast<long long>(a.low_events),
        static_cast<long long>(a.low_rate));
    const auto c0 = commit_h.Read();
    const auto g0 = group_h.Read();
    FeedResult lf = Feed(
        st, applier, ws, clock, a.low_events, a.low_rate, a.tick_ms,
        [&](int64_t i) {
          return std::make_pair(
              MessageBody(nullptr, (i * 104729 + 17) % a.contacts, a.contacts + a.probes + i, run,
                          "Newsletter Subscribed"),
              false);
        },
        600.0);
    json l = FeedJson(lf, a.low_events, a.low_rate);
    const auto c = commit_h.Read();
    const auto g = group_h.Read();
    const double commits = static_cast<double>(c.count - c0.count);
    l["store_commits"] = c.count - c0.count;
    l["store_group_ms_mean"] = Round(commits ? (c.sum - c0.sum) / commits * 1000 : 0);
    l["writes_per_commit_mean"] =
        Round(commits ? static_cast<double>(g.sum - g0.sum) / commits : 0);
    l["journey"] = "latency-check: send, then end (no timer added)";
    l["pending_timers_beside"] = journeys.PendingTimers();
    const int64_t sent = db.Int(
        "SELECT count(*) FROM messages WHERE journey = 'latency-check' AND step = 'confirm-email'");
    l["messages"] = sent;
    if (sent != a.low_events)
      out["problems"].push_back("latency-check: " + std::to_string(sent) + " messages for " +
                                std::to_string(a.low_events) + " events");
    if (lf.failed) out["problems"].push_back("failed writes (latency check): " + lf.first_error);
    out["latency_below_saturation"] = l;
    Log("below saturation: p50 %.3f ms, p99 %.3f ms", l["latency_ms"].value("p50", 0.0),
        l["latency_ms"].value("p99", 0.0));
  }

  // Timer lateness on the real clock, N timers pending beside the probes'.
  const int64_t probes = a.probes;
  if (probes > 0) {
    auto& lateness_h = metrics.GetHistogram("nudge_journey_timer_lateness_seconds", "", {});
    Log("lateness: %lld probe events at %lld/s, each waking %d s later",
        static_cast<long long>(probes), static_cast<long long>(a.probe_rate), probe_wait_s);
    FeedResult pf = Feed(
        st, applier, ws, clock, probes, a.probe_rate, a.tick_ms,
        [&](int64_t i) {
          return std::make_pair(
              MessageBody(nullptr, (i * 7919) % a.contacts, a.contacts + i, run, "Lateness Probe"),
              false);
        },
        600.0);
    // Wait for every probe's second send.
    const double deadline = Mono() + probe_wait_s + 300;
    int64_t fired = 0;
    while (Mono() < deadline) {
      fired = db.Int(
          "SELECT count(*) FROM messages WHERE journey = 'lateness-probe' AND step = 'after-wait'");
      if (fired >= probes) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    std::vector<int64_t> late_us;
    late_us.reserve(static_cast<size_t>(probes));
    db.Rows(
        "SELECT e.at, c.at FROM journey_steps e JOIN journey_steps c ON c.instance_id = "
        "e.instance_id AND c.step = 'pause' AND c.outcome = 'completed' WHERE e.journey = "
        "'lateness-probe' AND e.step = 'pause' AND e.outcome = 'entered'",
        [&](sqlite3_stmt* s) {
          const Millis due = sqlite3_column_int64(s, 0) + probe_wait_s * kSecond;
          late_us.push_back((sqlite3_column_int64(s, 1) - due) * 1000);
        });
    json l;
    l["timers"] = probes;
    l["fired"] = fired;
    l["wait_s"] = probe_wait_s;
    l["offered_per_s"] = a.probe_rate;
    l["pending_beside_them"] = a.contacts;
    l["lateness_ms_from_step_log"] = Percentiles(late_us);
    l["engine_histogram_nudge_journey_timer_lateness_seconds"] = HistogramJson(lateness_h);
    l["probe_ingest"] = FeedJson(pf, probes, a.probe_rate);
    l["fires_overlapped_ingest"] = pf.complete_seconds > probe_wait_s;
    l["due_per_s_actual"] =
        Round(static_cast<double>(probes) / std::max(1e-9, pf.complete_seconds));
    out["lateness"] = l;
    if (fired < probes)
      out["problems"].push_back("only " + std::to_string(fired) + " of " + std::to_string(probes) +
                                " probe timers fired");
    Log("lateness: p50 %.1f ms, p99 %.1f ms (step log, ms resolution)",
        l["lateness_ms_from_step_log"].value("p50", 0.0),
        l["lateness_ms_from_step_log"].value("p99", 0.0));
  }
  journeys.Stop();
  segments.Stop();

  // Checks: one instance and one first-email message per trigger event.
  std::vector<int64_t> expected(kNumJourneys, 0);
  for (int j : journey_of) ++expected[static_cast<size_t>(j)];
  json checks = json::array();
  for (int j = 0; j < kNumJourneys; ++j) {
    const std::string id = Quote(kJourneys[j].id);
    json c;
    c["journey"] = kJourneys[j].id;
    c["trigger_events"] = expected[j];
    c["instances"] = db.Int("SELECT count(*) FROM journey_instances WHERE journey = " + id);
    c["distinct_triggers"] =
        db.Int("SELECT count(DISTINCT trigger_key) FROM journey_instances WHERE journey = " + id);
    c["waiting_at_first_wait"] =
        db.Int("SELECT count(*) FROM journey_instances WHERE journey = " + id +
               " AND status = 'active' AND step = 'first-wait' AND wake_at IS NOT NULL");
    c["first_email_messages"] =
        db.Int("SELECT count(*) FROM messages WHERE journey = " + id + " AND step = 'first-email'");
    c["first_email_distinct_instances"] =
        db.Int("SELECT count(DISTINCT instance_id) FROM messages WHERE journey = " + id +
               " AND step = 'first-email' AND status = 'queued'");
    const bool ok = c["instances"] == expected[j] && c["distinct_triggers"] == expected[j] &&
                    c["waiting_at_first_wait"] == expected[j] &&
                    c["first_email_messages"] == expected[j] &&
                    c["first_email_distinct_instances"] == expected[j];
    c["ok"] = ok;
    if (!ok) out["problems"].push_back(std::string("outbox check failed for ") + kJourneys[j].id);
    checks.push_back(c);
  }
  out["outbox_checks"] = checks;
  const int64_t client_events =
      db.Int("SELECT count(*) FROM events WHERE message_id NOT LIKE 'nudge:%'");
  out["client_events_stored"] = client_events;
  if (client_events != a.contacts + probes + a.low_events)
    out["problems"].push_back("client events stored " + std::to_string(client_events) + " != " +
                              std::to_string(a.contacts + probes + a.low_events) + " sent");
  if (feed.failed) out["problems"].push_back("failed writes in part 1: " + feed.first_error);
  {
    // The writer's pauses to restart the store's log (WAL), over all of part 1.
    auto& restart_h = metrics.GetHistogram("nudge_store_log_restart_seconds", "", {});
    const auto r = restart_h.Read();
    json lr;
    const uint64_t refused =
        metrics.GetCounter("nudge_store_log_restarts_refused_total", "").Value();
    lr["attempts"] = r.count;
    lr["restarts"] = r.count - refused;
    lr["refused"] = refused;
    lr["writer_ms_mean"] = Round(r.count ? r.sum / static_cast<double>(r.count) * 1000 : 0);
    lr["writer_ms_total"] = Round(r.sum * 1000);
    lr["writer_ms_p99_estimate"] = Round(restart_h.Quantile(0.99) * 1000);
    lr["note"] =
        "nudge_store_log_restart_seconds over part 1: each time the log reached 256 MiB, the "
        "writer waited for the checkpoint in progress and tried to restart the log (refused: "
        "a reader still read from it); the writer's time is per attempt";
    out["log_restarts"] = lr;
  }
  {
    // Reads at this size through the store, the median of 21 each: the first page of one
    // journey's instances (the admin API's 50 and one more), of its messages, and delivery's
    // first page of due messages (every first email is queued: nothing delivers here); beside
    // the same page of messages by primary key in plain SQLite.
    json r;
    // r[name + "_ms"]: the median time of `read`; r[name + "_rows"]: the rows it returned.
    auto time_page = [&r](const std::string& name, const std::function<size_t()>& read) {
      std::vector<double> ms;
      size_t rows = 0;
      for (int i = 0; i < 21; ++i) {
        const int64_t t0 = core::MonotonicMicros();
        rows = read();
        ms.push_back(static_cast<double>(core::MonotonicMicros() - t0) / 1000.0);
      }
      std::sort(ms.begin(), ms.end());
      r[name + "_ms"] = Round(ms[ms.size() / 2]);
      r[name + "_rows"] = rows;
    };
    // A page read through the store; `list` returns its rows.
    auto in_store = [&st](const std::function<Result<size_t>(store::ReadTxn&)>& list) {
      return [&st, list] {
        size_t n = 0;
        Check(st.Read([&](store::ReadTxn& t) -> Status {
          NUDGE_ASSIGN_OR_RETURN(n, list(t));
          return Status::Ok();
        }),
              "read a page");
        return n;
      };
    };
    const std::string journey = kJourneys[0].id;
    store::MessageFilter f;
    f.workspace = ws;
    f.journey = journey;
    f.limit = 51;
    time_page("instances_page", in_store([&](store::ReadTxn& t) -> Result<size_t> {
                NUDGE_ASSIGN_OR_RETURN(auto v, t.ListInstances(ws, journey, std::nullopt, 51, 0));
                return v.size();
              }));
    time_page("journey_messages_page", in_store([&](store::ReadTxn& t) -> Result<size_t> {
                NUDGE_ASSIGN_OR_RETURN(auto v, t.ListMessages(f));
                return v.size();
              }));
    time_page("due_messages_page", in_store([&](store::ReadTxn& t) -> Result<size_t> {
                store::DueCursor cursor;
                NUDGE_ASSIGN_OR_RETURN(auto v, t.DueMessages(clock.NowMillis(), 100, cursor));
                return v.size();
              }));
    time_page("reference_sqlite_messages_page_by_id", [&] {
      size_t n = 0;
      db.Rows("SELECT * FROM messages ORDER BY id DESC LIMIT 51", [&](sqlite3_stmt*) { ++n; });
      return n;
    });
    r["queued_messages"] = db.Int("SELECT count(*) FROM messages WHERE status = 'queued'");
    for (const char* k : {"instances_page_rows", "journey_messages_page_rows"})
      if (r[k] != 51) out["problems"].push_back(std::string("reads: ") + k + " is not 51");
    if (r["due_messages_page_rows"] != 100)
      out["problems"].push_back("reads: the due messages page does not hold 100");
    out["reads"] = r;
    Log("reads: instances page %.2f ms, journey's messages page %.2f ms, due messages page "
        "%.2f ms; plain SQLite page by id %.2f ms",
        r["instances_page_ms"].get<double>(), r["journey_messages_page_ms"].get<double>(),
        r["due_messages_page_ms"].get<double>(),
        r["reference_sqlite_messages_page_by_id_ms"].get<double>());
  }
  out["expected_per_journey"] = expected;
  out["part1_started_ms"] = part1_started;
  out["part1_ended_ms"] = part1_ended;
  out["ws"] = ws;
  out["load_average_after"] = LoadAvg();
  st.Close();
  std::ofstream(g_child_out) << out.dump() << "\n";
}

// ---------------------------------------------------------------------------------------------
// Part 2: pending timers (disk, memory, fires on a virtual clock)

json DiskPerInstance(const std::string& db_path, int64_t instances) {
  Sql db(db_path, true);
  json out;
  out["database_file_bytes"] = std::filesystem::file_size(db_path);
  out["active_instances"] = instances;
  sqlite3_stmt* probe = db.Prepare("SELECT count(*) FROM dbstat WHERE name = 'x'", false);
  if (!probe) {
    out["dbstat"] = "unavailable (SQLite built without SQLITE_ENABLE_DBSTAT_VTAB)";
    return out;
  }
  sqlite3_finalize(probe);
  json parts = json::object();
  int64_t total = 0;
  db.Rows(
      "SELECT name, sum(pgsize), sum(payload), count(*) FROM dbstat WHERE name IN "
      "('journey_instances', 'journey_instances_contact', 'journey_instances_journey', "
      "'journey_instances_active') GROUP BY name ORDER BY name",
      [&](sqlite3_stmt* s) {
        const std::string name = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        const int64_t bytes = sqlite3_column_int64(s, 1);
        total += bytes;
        parts[name] = {{"bytes", bytes},
                       {"payload_bytes", sqlite3_column_int64(s, 2)},
                       {"pages", sqlite3_column_int64(s, 3)},
                       {"bytes_per_instance",
                        Round(static_cast<double>(bytes) / static_cast<double>(instances))}};
      });
  out["by_btree"] = parts;
  out["bytes_per_pending_timer"] =
      Round(static_cast<double>(total) / static_cast<double>(instances));
  db.Rows(
      "SELECT avg(length(data)), avg(length(trigger_key)), avg(length(journey)) FROM "
      "journey_instances WHERE status = 'active'",
      [&](sqlite3_stmt* s) {
        out["avg_data_column_bytes"] = Round(sqlite3_column_double(s, 0));
        out["avg_trigger_key_bytes"] = Round(sqlite3_column_double(s, 1));
        out["avg_journey_id_bytes"] = Round(sqlite3_column_double(s, 2));
      });
  out["note"] =
      "a pending timer is the instance row's wake_at: bytes = the journey_instances table and its "
      "3 indexes (pages, free space in them included) / active instances; the data column holds "
      "the triggering event";
  return out;
}

// The layout the engine's in-memory state should take per pending timer (src/journey/engine.cc):
// one node of an unordered_multimap<ContactId, Active> per instance (Active: 40 B), its share of
// the bucket array, and one entry of the timer heap (24 B: when, contact, instance). glibc malloc
// chunks: request + 8, rounded up to 16, at least 32.
struct ActiveMirror {
  int64_t id;
  store::ContactId contact;
  Millis wake;
  const void* journey;
  int32_t version;
  uint16_t step;
  uint8_t wait;
};
struct TimerMirror {
  Millis at;
  store::ContactId contact;
  int64_t id;
};
size_t Chunk(size_t n) { return std::max<size_t>(32, (n + 8 + 15) & ~size_t{15}); }

json LayoutEstimate() {
  const size_t node = Chunk(8 + sizeof(std::pair<const store::ContactId, ActiveMirror>));
  // Buckets: 8 B each, 1–2 per element (load factor ≤ 1, doubling); the heap's vector: one
  // entry per element, 1–2× capacity.
  const double low = static_cast<double>(node + 8 + sizeof(TimerMirror));
  const double high = low + 8 + static_cast<double>(sizeof(TimerMirror));
  return {{"instance_node", node},
          {"hash_buckets", "8-16"},
          {"timer_heap_entry",
           std::to_string(sizeof(TimerMirror)) + "-" + std::to_string(2 * sizeof(TimerMirror))},
          {"bytes_per_timer_low", Round(low)},
          {"bytes_per_timer_high", Round(high)}};
}

struct FireResult {
  json out;
};

json RunPart2(const Args& a, const std::string& db_path, const json& p1,
              std::vector<std::string>& problems) {
  json out;
  std::vector<int64_t> expected = p1["expected_per_journey"].get<std::vector<int64_t>>();
  int64_t instances = 0;
  for (int64_t e : expected) instances += e;
  Millis max_first_wait = 0;
  for (const auto& j : kJourneys) max_first_wait = std::max(max_first_wait, j.first_wait_ms);

  // Memory: the same engines on a virtual clock starting now, the store re-opened.
  const MemPoint m0 = Mem();
  core::SystemClock wall;
  core::VirtualClock clock(wall.NowMillis());
  core::MetricsRegistry metrics;
  auto opened = store::OpenSqliteStore({.path = db_path, .metrics = &metrics});
  if (!opened) Die("re-open the store: " + opened.error().ToString());
  store::Store& st = **opened;
  profile::ContactCache cache;
  segment::Engine segments(st, cache, clock, &metrics,
                           segment::EngineOptions{.background_threads = false});
  Log("part 2: segments.Load (contacts into memory)");
  double t = Mono();
  Check(segments.Load(), "segments.Load");
  const double segments_load_s = Mono() - t;
  const MemPoint m1 = Mem();
  journey::Engine journeys(st, segments, cache, clock, &metrics,
                           journey::EngineOptions{.background_threads = false});
  segments.SetDownstream(&journeys);
  Log("part 2: journeys.Load (%lld instances and their timers into memory)",
      static_cast<long long>(instances));
  t = Mono();
  Check(journeys.Load(), "journeys.Load");
  const double journeys_load_s = Mono() - t;
  const MemPoint m2 = Mem();
  const size_t pending = journeys.PendingTimers();
  {
    json mem;
    mem["pending_timers"] = pending;
    mem["heap_in_use_bytes"] = {{"before_journeys_load", m1.heap}, {"after", m2.heap}};
    mem["rss_bytes"] = {{"process_start", m0.rss},
                        {"after_segments_load", m1.rss},
                        {"after_journeys_load", m2.rss}};
    const double n = static_cast<double>(std::max<size_t>(1, pending));
    mem["heap_bytes_per_pending_timer"] = Round(static_cast<double>(m2.heap - m1.heap) / n);
    mem["rss_bytes_per_pending_timer"] = Round(static_cast<double>(m2.rss - m1.rss) / n);
    mem["contact_cache_bytes_per_contact"] =
        Round(static_cast<double>(cache.MemoryBytes()) /
              static_cast<double>(std::max<size_t>(1, cache.size())));
    mem["layout_estimate"] = LayoutEstimate();
    mem["load_seconds"] = {{"segments", Round(segments_load_s)},
                           {"journeys", Round(journeys_load_s)}};
    mem["note"] =
        "heap = mallinfo2 in-use bytes and RSS after malloc_trim(0), before and after "
        "journey::Engine::Load() (the instances' rows are read, kept as the engine's in-memory "
        "state and timers, the rows freed); per timer = difference / pending timers";
    out["memory"] = mem;
  }
  if (pending != static_cast<size_t>(instances))
    problems.push_back("pending timers after Load: " + std::to_string(pending) +
                       " != " + std::to_string(instances) + " instances");

  // Fires.
  Sql db(db_path, true);
  const auto before = TableCounts(db);
  auto& lateness_h = metrics.GetHistogram("nudge_journey_timer_lateness_seconds", "", {});
  auto& commit_h = metrics.GetHistogram("nudge_store_commit_seconds", "", {});
  const auto commits0 = commit_h.Read();
  const uint64_t fires0 = lateness_h.Read().count;
  const Millis horizon = clock.NowMillis() + max_first_wait + 60 * kSecond;
  Log("part 2: firing %zu timers on the virtual clock (steps of %d s)", pending, a.fire_step_s);
  double fire_wall = 0, segments_wall = 0;
  const double cpu0 = ProcessCpu();
  const auto threads0 = ThreadCpu();
  int64_t run_due_calls = 0, clock_steps = 0;
  std::vector<std::pair<double, uint64_t>> progress;  // (seconds, fires)
  for (int guard = 0; guard < 1'000'000; ++guard) {
    auto due = journeys.NextDue();
    if (!due || *due > horizon) break;
    clock.Set(std::max(clock.NowMillis(), std::min(*due + a.fire_step_s * kSecond, horizon)));
    ++clock_steps;
    double s0 = Mono();
    Check(segments.RunDue(), "segments.RunDue");
    segments_wall += Mono() - s0;
    s0 = Mono();
    for (int inner = 0; inner < 100'000; ++inner) {
      auto d = journeys.NextDue();
      if (!d || *d > clock.NowMillis()) break;
      Check(journeys.RunDue(), "journeys.RunDue");
      ++run_due_calls;
    }
    fire_wall += Mono() - s0;
    progress.emplace_back(Round(fire_wall), lateness_h.Read().count - fires0);
  }
  const double fire_cpu = ProcessCpu() - cpu0;
  const double writer_cpu = BusiestThreadDelta(threads0, ThreadCpu());
  const uint64_t fires = lateness_h.Read().count - fires0;
  const auto commits1 = commit_h.Read();
  const auto after = TableCounts(db);
  {
    json f;
    f["fires"] = fires;
    f["seconds"] = Round(fire_wall);
    f["fires_per_s"] = Round(static_cast<double>(fires) / std::max(1e-9, fire_wall));
    f["cpu_seconds"] = Round(fire_cpu);
    f["cpu_us_per_fire"] = Round(fire_cpu * 1e6 / std::max<double>(1, static_cast<double>(fires)));
    f["busiest_thread_busy_fraction"] =
        Round(writer_cpu / std::max(1e-9, fire_wall + segments_wall));
    f["busiest_thread_cpu_us_per_fire"] =
        Round(writer_cpu * 1e6 / std::max<double>(1, static_cast<double>(fires)));
    f["segments_run_due_seconds"] = Round(segments_wall);
    f["run_due_calls"] = run_due_calls;
    f["clock_steps"] = clock_steps;
    const double commits = static_cast<double>(commits1.count - commits0.count);
    f["store_commits"] = commits1.count - commits0.count;
    f["store_group_seconds_total"] = Round(commits1.sum - commits0.sum);
    f["store_group_ms_mean"] = Round(commits ? (commits1.sum - commits0.sum) / commits * 1000 : 0);
    json rows = json::object();
    for (const auto& [name, n] : after)
      rows[name] = Round(static_cast<double>(n - before.at(name)) /
                         std::max<double>(1, static_cast<double>(fires)));
    rows["journey_instances_updated"] = 1;
    f["rows_per_fire"] = rows;
    json prog = json::array();
    const size_t stride = std::max<size_t>(1, progress.size() / 20);
    for (size_t i = 0; i < progress.size(); i += stride)
      prog.push_back({progress[i].first, progress[i].second});
    f["progress_seconds_fires"] = prog;
    f["note"] =
        "virtual clock: it jumps to the next due timer + fire_step_s and RunDue() runs until "
        "nothing is due; a fire = an instance leaving first-wait, second-email's outbox row and "
        "step log written, the instance waiting at second-wait (its row updated), in writes of "
        "2000 fires (RunDue's chunks), each committed with fsync";
    Log("part 2: %llu fires in %.1f s: %.0f fires/s, %.1f us of the busiest thread per fire",
        static_cast<unsigned long long>(fires), fire_wall, f["fires_per_s"].get<double>(),
        f["busiest_thread_cpu_us_per_fire"].get<double>());
    out["fires"] = f;
    out["fire_row_deltas"] = {
        {"messages", after.at("messages") - before.at("messages")},
        {"journey_step_log", after.at("journey_step_log") - before.at("journey_step_log")},
        {"events", after.at("events") - before.at("events")}};
  }
  if (fires != static_cast<uint64_t>(instances))
    problems.push_back("fires " + std::to_string(fires) + " != " + std::to_string(instances) +
                       " first-wave timers");
  // Checks: one queued second-email per instance, every instance waiting at second-wait.
  json checks = json::array();
  for (int j = 0; j < kNumJourneys; ++j) {
    const std::string id = Quote(kJourneys[j].id);
    json c;
    c["journey"] = kJourneys[j].id;
    c["instances"] = expected[j];
    c["second_email_queued"] = db.Int("SELECT count(*) FROM messages WHERE journey = " + id +
                                      " AND step = 'second-email' AND status = 'queued'");
    c["second_email_all"] = db.Int("SELECT count(*) FROM messages WHERE journey = " + id +
                                   " AND step = 'second-email'");
    c["waiting_at_second_wait"] =
        db.Int("SELECT count(*) FROM journey_instances WHERE journey = " + id +
               " AND status = 'active' AND step = 'second-wait'");
    const bool ok = c["second_email_queued"] == expected[j] &&
                    c["second_email_all"] == expected[j] &&
                    c["waiting_at_second_wait"] == expected[j];
    c["ok"] = ok;
    if (!ok) problems.push_back(std::string("fire check failed for ") + kJourneys[j].id);
    checks.push_back(c);
  }
  out["fire_checks"] = checks;
  journeys.Stop();
  segments.Stop();
  st.Close();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Part 3: the reference (raw SQLite, the same rows)

// The disk's floor for any durable write: one-row commits (WAL, synchronous=FULL), in ms.
json OneRowCommits(const std::string& dir, int count) {
  const std::string path = dir + "/one-row.db";
  json out;
  {
    Sql db(path, false);
    db.Exec("PRAGMA journal_mode = WAL");
    db.Exec("PRAGMA synchronous = FULL");
    db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    sqlite3_stmt* ins =
        db.Prepare("INSERT INTO t(v) VALUES('a row of about forty bytes of text..')");
    std::vector<int64_t> us;
    for (int i = 0; i < count; ++i) {
      const int64_t t0 = core::MonotonicMicros();
      db.Exec("BEGIN");
      if (sqlite3_step(ins) != SQLITE_DONE) Die("one-row insert failed");
      sqlite3_reset(ins);
      db.Exec("COMMIT");
      us.push_back(core::MonotonicMicros() - t0);
    }
    sqlite3_finalize(ins);
    out = Percentiles(us);
  }
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix, ec);
  return out;
}

struct RefTable {
  std::string name;
  std::vector<std::string> columns;            // inserted (the INTEGER PRIMARY KEY left out)
  std::vector<std::vector<std::string>> text;  // sampled rows, as text or empty for NULL
  std::vector<std::vector<int>> types;
  int unique_column = -1;  // gets a suffix per row to stay unique
  sqlite3_stmt* insert = nullptr;
};

RefTable SampleTable(Sql& src, const std::string& name, const std::string& where,
                     const std::string& unique, int sample) {
  RefTable t;
  t.name = name;
  src.Rows("SELECT name, pk FROM pragma_table_info(" + Quote(name) + ")", [&](sqlite3_stmt* s) {
    const std::string col = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    if (sqlite3_column_int(s, 1) == 1 && col == "id") return;
    if (col == unique) t.unique_column = static_cast<int>(t.columns.size());
    t.columns.push_back(col);
  });
  std::string cols;
  for (const auto& c : t.columns) cols += (cols.empty() ? "" : ", ") + c;
  src.Rows("SELECT " + cols + " FROM " + name + " " + where + " ORDER BY rowid DESC LIMIT " +
               std::to_string(sample),
           [&](sqlite3_stmt* s) {
             std::vector<std::string> row;
             std::vector<int> types;
             for (int i = 0; i < static_cast<int>(t.columns.size()); ++i) {
               types.push_back(sqlite3_column_type(s, i));
               const unsigned char* v = sqlite3_column_text(s, i);
               row.push_back(v ? reinterpret_cast<const char*>(v) : "");
             }
             t.text.push_back(std::move(row));
             t.types.push_back(std::move(types));
           });
  if (t.text.empty()) Die("no rows to sample in " + name);
  return t;
}

void InsertSample(RefTable& t, size_t k, int64_t serial) {
  sqlite3_stmt* s = t.insert;
  const auto& row = t.text[k % t.text.size()];
  const auto& types = t.types[k % t.text.size()];
  std::string unique;
  for (int i = 0; i < static_cast<int>(row.size()); ++i) {
    if (i == t.unique_column) {
      unique = row[i] + "#" + std::to_string(serial);
      sqlite3_bind_text(s, i + 1, unique.data(), static_cast<int>(unique.size()), SQLITE_TRANSIENT);
      continue;
    }
    switch (types[i]) {
      case SQLITE_NULL:
        sqlite3_bind_null(s, i + 1);
        break;
      case SQLITE_INTEGER:
        sqlite3_bind_int64(s, i + 1, std::atoll(row[i].c_str()));
        break;
      case SQLITE_FLOAT:
        sqlite3_bind_double(s, i + 1, std::atof(row[i].c_str()));
        break;
      default:
        sqlite3_bind_text(s, i + 1, row[i].data(), static_cast<int>(row[i].size()), SQLITE_STATIC);
    }
  }
  if (sqlite3_step(s) != SQLITE_DONE)
    Die(std::string("reference insert: ") + sqlite3_errmsg(sqlite3_db_handle(s)));
  sqlite3_reset(s);
}

// Inserts `fires` × (1 instance, messages_per, steps_per[, events_per]) rows, 2000 fires per
// transaction; returns the JSON with rows/s.
json RunReference(const std::string& src_path, const std::string& path, int64_t fires,
                  double messages_per, double steps_per, double events_per) {
  Sql src(src_path, true);
  std::vector<std::pair<RefTable, double>> tables;
  tables.emplace_back(
      SampleTable(src, "journey_instances",
                  "WHERE journey NOT IN ('lateness-probe', 'latency-check')", "", 10000),
      1.0);
  tables.emplace_back(
      SampleTable(src, "messages", "WHERE step = 'second-email'", "idempotency_key", 10000),
      messages_per);
  tables.emplace_back(SampleTable(src, "journey_step_log", "", "", 10000), steps_per);
  if (events_per > 0)
    tables.emplace_back(
        SampleTable(src, "events", "WHERE message_id LIKE 'nudge:%'", "message_id", 10000),
        events_per);
  std::filesystem::remove(path);
  Sql db(path, false);
  db.Exec("PRAGMA journal_mode = WAL");
  db.Exec("PRAGMA synchronous = FULL");
  db.Exec("PRAGMA cache_size = -65536");
  // The same DDL (tables and indexes) as the store's.
  for (auto& [t, per] : tables) {
    src.Rows("SELECT sql FROM sqlite_master WHERE tbl_name = " + Quote(t.name) +
                 " AND sql IS NOT NULL ORDER BY type DESC",
             [&](sqlite3_stmt* s) {
               db.Exec(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
             });
    std::string cols, marks;
    for (const auto& c : t.columns) {
      cols += (cols.empty() ? "" : ", ") + c;
      marks += marks.empty() ? "?" : ", ?";
    }
    t.insert = db.Prepare("INSERT INTO " + t.name + "(" + cols + ") VALUES(" + marks + ")");
  }
  std::vector<double> owed(tables.size(), 0);
  int64_t rows = 0, serial = 0;
  const int64_t per_txn = 2000;
  const double t0 = Mono();
  for (int64_t f = 0; f < fires; f += per_txn) {
    db.Exec("BEGIN");
    for (int64_t k = f; k < std::min(fires, f + per_txn); ++k) {
      for (size_t i = 0; i < tables.size(); ++i) {
        owed[i] += tables[i].second;
        while (owed[i] >= 1.0) {
          owed[i] -= 1.0;
          InsertSample(tables[i].first, static_cast<size_t>(serial), serial);
          ++serial;
          ++rows;
        }
      }
    }
    db.Exec("COMMIT");
  }
  const double secs = Mono() - t0;
  for (auto& [t, per] : tables) sqlite3_finalize(t.insert);
  json out;
  json shape = json::object();
  for (auto& [t, per] : tables) shape[t.name] = Round(per);
  out["rows_per_fire"] = shape;
  out["fires"] = fires;
  out["rows"] = rows;
  out["seconds"] = Round(secs);
  out["rows_per_s"] = Round(static_cast<double>(rows) / secs);
  out["fires_per_s"] = Round(static_cast<double>(fires) / secs);
  out["database_bytes"] = std::filesystem::file_size(path);
  return out;
}

// ---------------------------------------------------------------------------------------------

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value after " + k);
      return argv[++i];
    };
    if (k == "--contacts")
      a.contacts = std::stoll(next());
    else if (k == "--rate")
      a.rate = std::stoll(next());
    else if (k == "--tick-ms")
      a.tick_ms = std::stoi(next());
    else if (k == "--probes")
      a.probes = std::stoll(next());
    else if (k == "--probe-rate")
      a.probe_rate = std::stoll(next());
    else if (k == "--probe-wait-s")
      a.probe_wait_s = std::stoi(next());
    else if (k == "--fire-step-s")
      a.fire_step_s = std::stoi(next());
    else if (k == "--low-rate")
      a.low_rate = std::stoll(next());
    else if (k == "--low-events")
      a.low_events = std::stoll(next());
    else if (k == "--tmpdir")
      a.tmpdir = next();
    else if (k == "--keep")
      a.keep = true;
    else if (k == "--seed")
      a.seed = std::stoull(next());
    else if (k == "--save-part1")
      a.save_part1 = next();
    else if (k == "--part2-from")
      a.part2_from = next();
    else
      Die("unknown argument " + k);
  }
  if (a.contacts <= 0 || a.rate <= 0 || a.tick_ms <= 0 || a.probe_rate <= 0 ||
      a.probe_wait_s <= 0 || a.fire_step_s <= 0)
    Die("counts, rates and times must be positive");
  if (a.probes < 0) a.probes = std::min<int64_t>(100'000, a.contacts / 10);
  if (a.low_events < 0) a.low_events = std::min<int64_t>(20'000, a.contacts);
  if (a.low_rate <= 0) Die("--low-rate must be positive");
  return a;
}

json Goal(double value, double target, bool at_most, const char* unit) {
  return {{"value", Round(value)},
          {"target", target},
          {"unit", unit},
          {"rule", at_most ? "at most" : "at least"},
          {"met", at_most ? value <= target : value >= target}};
}

int Main(int argc, char** argv) {
  // The engines measured with the heap nudge serve gives them (core/huge_pages.h).
  core::ReexecWithHugePages(argv);
  // The process-wide SQLite settings nudge serve has: made now, since OneRowCommits opens raw
  // connections before part 1 opens the store (after them SQLite would ignore the settings).
  store::sqlite::ConfigureLibrary();
  Args a = ParseArgs(argc, argv);
  // Logs go to stderr: stdout holds only the JSON.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("journeys_bench"));
  spdlog::set_level(spdlog::level::warn);

  char tmpl[4096];
  std::snprintf(tmpl, sizeof tmpl, "%s/nudge-bench-journeys.XXXXXX", a.tmpdir.c_str());
  if (!mkdtemp(tmpl)) Die("mkdtemp in " + a.tmpdir + " failed");
  g_dir = tmpl;
  g_keep = a.keep;
  const std::string db_path = g_dir + "/nudge.db";
  g_child_out = g_dir + "/part1.json";
  const std::string run = "jb" + std::to_string(getpid());
  const double t_start = Mono();
  json out;
  out["benchmark"] = "journeys";
  out["contacts"] = a.contacts;
  out["journeys"] = kNumJourneys;
  out["settings"] = {{"rate", a.rate},
                     {"tick_ms", a.tick_ms},
                     {"probes", a.probes},
                     {"probe_rate", a.probe_rate},
                     {"probe_wait_s", a.probe_wait_s},
                     {"fire_step_s", a.fire_step_s},
                     {"low_rate", a.low_rate},
                     {"low_events", a.low_events},
                     {"seed", a.seed}};
  out["data_fs"] = FsType(g_dir);
  out["cores"] = std::thread::hardware_concurrency();
  out["load_average_start"] = LoadAvg();

  const json one_row_before = OneRowCommits(g_dir, 200);

  // The store files part 1 leaves (the checkpointed database and what may remain of its WAL).
  auto copy_store = [](const std::string& from_dir, const std::string& to_dir) {
    namespace fs = std::filesystem;
    for (const char* name : {"nudge.db", "nudge.db-wal", "part1.json"})
      if (fs::exists(fs::path(from_dir) / name))
        fs::copy_file(fs::path(from_dir) / name, fs::path(to_dir) / name,
                      fs::copy_options::overwrite_existing);
  };
  int wstatus = 0;
  if (!a.part2_from.empty()) {
    // Part 2 (and the references) again on a store part 1 made earlier: a change to the fire
    // path measured on the same rows, without the half hour part 1 takes at a million contacts.
    Log("part 1 skipped: the store and results of %s", a.part2_from.c_str());
    copy_store(a.part2_from, g_dir);
    out["part1_from"] = a.part2_from;
  } else {
    // Part 1 in a child: the parent's memory stays clean for part 2's figures.
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) Die("fork failed");
    if (pid == 0) {
      g_child = true;
      RunPart1(a, db_path, run);
      std::_Exit(0);
    }
    waitpid(pid, &wstatus, 0);
    if (!a.save_part1.empty()) {
      std::filesystem::create_directories(a.save_part1);
      copy_store(g_dir, a.save_part1);
      Log("part 1's store and results saved in %s", a.save_part1.c_str());
    }
  }
  json p1;
  {
    std::ifstream in(g_child_out);
    p1 = json::parse(in, nullptr, false);
  }
  if (p1.is_discarded() || !p1.is_object())
    Die("part 1 (child) ended with status " + std::to_string(wstatus) + " and no result");
  if (p1.contains("error")) Die("part 1: " + p1["error"].get<std::string>());
  std::vector<std::string> problems;
  if (p1.contains("problems"))
    for (const auto& p : p1["problems"]) problems.push_back(p.get<std::string>());

  json latency = p1["latency"];
  latency["rows_per_trigger_event"] = p1["rows_per_trigger_event"];
  latency["outbox_checks"] = p1["outbox_checks"];
  latency["client_events_stored"] = p1["client_events_stored"];
  latency["load_average_before_after"] = {p1["load_average_before"], p1["load_average_after"]};
  out["latency"] = latency;
  if (p1.contains("latency_below_saturation"))
    out["latency_below_saturation"] = p1["latency_below_saturation"];
  if (p1.contains("lateness")) out["lateness"] = p1["lateness"];
  if (p1.contains("log_restarts")) out["log_restarts"] = p1["log_restarts"];
  if (p1.contains("reads")) out["reads"] = p1["reads"];

  json p2 = RunPart2(a, db_path, p1, problems);
  out["pending_timers"] = {{"disk", p1["disk"]}, {"memory", p2["memory"]}};
  out["fires"] = p2["fires"];
  out["fires"]["checks"] = p2["fire_checks"];

  // Reference: the rows a fire writes, as plain INSERTs.
  const int64_t fires = p2["fires"].value("fires", int64_t{0});
  const double nf = std::max<double>(1, static_cast<double>(fires));
  const double messages_per =
      static_cast<double>(p2["fire_row_deltas"]["messages"].get<int64_t>()) / nf;
  const double steps_per =
      static_cast<double>(p2["fire_row_deltas"]["journey_step_log"].get<int64_t>()) / nf;
  const double events_per =
      static_cast<double>(p2["fire_row_deltas"]["events"].get<int64_t>()) / nf;
  json ref;
  if (fires > 0) {
    Log("reference: %lld fires' rows as plain INSERTs (instances, messages, steps)",
        static_cast<long long>(fires));
    ref["instances_messages_steps"] =
        RunReference(db_path, g_dir + "/ref1.db", fires, messages_per, steps_per, 0);
    std::filesystem::remove(g_dir + "/ref1.db");
    Log("reference: the same plus the derived events");
    ref["plus_derived_events"] =
        RunReference(db_path, g_dir + "/ref2.db", fires, messages_per, steps_per, events_per);
    std::filesystem::remove(g_dir + "/ref2.db");
    ref["note"] =
        "sqlite3 C API, one connection, WAL, synchronous=FULL, cache_size 64 MiB, default "
        "autocheckpoint, the store's own DDL (tables and indexes), rows sampled from what the "
        "engine wrote, one transaction per 2000 fires; instance rows are INSERTed where the "
        "engine UPDATEs them";
  }
  ref["one_row_commit_ms"] = {{"before", one_row_before}, {"after", OneRowCommits(g_dir, 200)}};
  ref["one_row_commit_note"] =
      "BEGIN; INSERT one row; COMMIT with WAL and synchronous=FULL, 200 times, in the data "
      "directory: the disk's floor for the latency of any durable event";
  out["reference_sqlite"] = ref;

  // Ratios and goals.
  const double fires_per_s = p2["fires"].value("fires_per_s", 0.0);
  json ratios;
  if (fires > 0) {
    ratios["engine_fires_vs_reference_fires"] =
        Round(fires_per_s / ref["instances_messages_steps"].value("fires_per_s", 1.0));
    ratios["engine_fires_vs_reference_with_events"] =
        Round(fires_per_s / ref["plus_derived_events"].value("fires_per_s", 1.0));
  }
  ratios["latency_committed_vs_target_rate"] =
      Round(latency.value("committed_events_per_s", 0.0) / static_cast<double>(a.rate));
  out["ratios"] = ratios;

  const json& mem = out["pending_timers"]["memory"];
  const json& disk = out["pending_timers"]["disk"];
  json goals;
  goals["event_to_outbox_p99_ms"] = Goal(latency["latency_ms"].value("p99", 1e9), 5, true, "ms");
  goals["event_to_outbox_p99_ms"]["reference_one_row_commit_p99_ms"] =
      ref["one_row_commit_ms"]["before"].value("p99", 0.0);
  if (out.contains("latency_below_saturation"))
    goals["event_to_outbox_p99_ms"]["below_saturation"] = {
        {"rate", a.low_rate},
        {"p99_ms", out["latency_below_saturation"]["latency_ms"].value("p99", 0.0)}};
  goals["fires_per_s"] = Goal(fires_per_s, 100000, false, "fires/s");
  if (fires > 0)
    goals["fires_per_s"]["reference_sqlite_fires_per_s"] =
        ref["instances_messages_steps"].value("fires_per_s", 0.0);
  goals["memory_bytes_per_pending_timer"] =
      Goal(mem.value("heap_bytes_per_pending_timer", 1e9), 128, true, "bytes (heap)");
  if (disk.contains("bytes_per_pending_timer"))
    out["pending_timers"]["disk_vs_goal"] =
        Goal(disk.value("bytes_per_pending_timer", 1e9), 128, true, "bytes (disk; not the aim)");
  if (out.contains("lateness"))
    goals["timer_lateness_p99_ms"] = {
        {"value", out["lateness"]["lateness_ms_from_step_log"].value("p99", 0.0)},
        {"target", nullptr},
        {"note", "reported for reading; no aim is set for it"}};
  out["goals"] = goals;
  out["problems"] = problems;
  out["ok"] = problems.empty();
  out["seconds"] = Round(Mono() - t_start);
  out["load_average_end"] = LoadAvg();
  if (!g_keep) {
    std::error_code ec;
    std::filesystem::remove_all(g_dir, ec);
  } else {
    out["kept"] = g_dir;
  }
  std::printf("%s\n", out.dump(2).c_str());
  std::fflush(stdout);
  return problems.empty() ? 0 : 1;
}

}  // namespace
}  // namespace nudge::bench

int main(int argc, char** argv) { return nudge::bench::Main(argc, argv); }
