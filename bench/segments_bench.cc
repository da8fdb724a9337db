// segments_bench: segment evaluation at scale, beside the same segments written as SQL over the
// same SQLite data, in one process. Prints one JSON object on stdout (progress on stderr).
//
//   segments_bench [--contacts N] [--events N] [--batch N] [--rebuilds N] [--sql-runs N]
//                  [--tmpdir DIR] [--keep] [--seed N]
//
// What it does (bench/segments.sh runs it; every loop is bounded, nothing leaves the process):
//
//  setup (a forked child: "the server's previous life", so that the parent's memory figures
//  start clean)
//    - creates a SQLite store (store::OpenSqliteStore) in a fresh directory under --tmpdir,
//      a workspace, and stores the 20 segment definitions of kSegments;
//    - writes N contacts (11-12 traits each: email, names, company, plan, country, employees,
//      industry, signup_source, seats, created_at, sometimes unsubscribed) and 5-20 events each
//      over the last 60 days (Page Viewed with paths incl. /pricing, Email Opened, Email Link
//      Clicked, Video Progress, Product Viewed, Order Completed with revenue) straight into the
//      store with WriteTxn::InsertContact/InsertEvent, thousands per write;
//    - starts a segment::Engine once (Load): the first start evaluates everyone and stores the
//      memberships, stages and the derived events (Segment Entered, Stage Changed) they cause.
//  measurement (the parent, on the same store, single-threaded figures: "per core")
//    - load: a restart, engine.Load() on a fresh ContactCache (contacts, memberships, replay of
//      every event into the aggregates, reconcile); VmRSS before/after, ContactCache::MemoryBytes;
//    - rebuild: engine.EvaluateAllForBenchmark (every segment for every contact, in memory),
//      --rebuilds times; and each segment alone through Engine::PreviewCondition (a condition
//      on traits only, on paths the segments read, is answered from the trait columns:
//      load.trait_columns gives their number and memory);
//    - sql: four of the segments as plain SQL (json_extract over the contacts and events
//      tables, no index on trait expressions, sqlite3 C API, its own read connection),
//      --sql-runs times each; the member count
//      must equal the engine's (a mismatch fails the benchmark); then the same with an index on
//      events(ws, name, timestamp) added for the occasion (and dropped after);
//    - background: the real path for a new segment (Engine::PutSegment + WaitIdle: evaluation
//      of every contact in chunked writes that store membership rows; a new behavioural term
//      also replays the event history), for a trait segment and a behavioural one;
//    - incremental: --events new messages (track, page, 5 % identify changing traits) for random
//      existing contacts, in store writes of --batch messages (one commit each,
//      synchronous=FULL), the virtual clock moving 1 s per write (due timers run). In each write
//      profile::Applier::Apply stores the messages, then the engine's observer methods are
//      called for what it applied, in order, as the Applier does when the engine is its
//      observer (OnContactChanged for a trait change, then OnEvent; Engine::Prefetch for the
//      next event's contact first, the hint the Applier gives while it stores an event, timed
//      as the engine's). Times: end to end; inside
//      the engine's calls; the SQL the engine runs meanwhile (sqlite3_trace_v2 on every
//      connection). Then the same number of messages with no engine at all: the cost of
//      storing events without segments. Everything here is single-threaded (the store's writer
//      thread; the caller waits), hence "per core".
//
// The figures the aims are about, in the JSON: rebuild.seconds and rebuild.evaluations_per_s;
// background[].seconds; incremental.with_engine.events_per_s (end to end, SQLite included)
// beside incremental.without_engine.events_per_s, and incremental.with_engine.engine
// .events_per_s_per_core (the engine's in-memory work alone; quarters_events_per_s_per_core the
// same per quarter of the run); sql[].engine_vs_sql (sql_s of
// the SQL query / engine_s of the same segment evaluated alone over every contact) with both
// counts; load.seconds; memory.*_per_contact; goals: each aim with value/target/met.
//
// The exit status is 1 when a check failed ("ok": false, "problems" says which).
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/clock.h"
#include "core/huge_pages.h"
#include "core/metrics.h"
#include "core/time.h"
#include "ingest/parser.h"
#include "profile/applier.h"
#include "profile/contact_cache.h"
#include "segment/definitions.h"
#include "segment/engine.h"
#include "store/store.h"

namespace nudge::bench {
namespace {

using json = nlohmann::ordered_json;
using core::Millis;
using store::ContactId;
using store::WorkspaceId;

constexpr Millis kSecond = 1000;
constexpr Millis kDay = 86400 * kSecond;
constexpr int kHistoryDays = 60;

// ---------------------------------------------------------------------------------------------
// Parameters

struct Args {
  int64_t contacts = 1'000'000;
  int64_t events = 200'000;  // incremental messages, per run (with and without the engine)
  int batch = 500;           // messages per store write
  int rebuilds = 3;
  int sql_runs = 2;
  std::string tmpdir = "/var/tmp";
  bool keep = false;
  uint64_t seed = 20261102;
};

// ---------------------------------------------------------------------------------------------
// Small helpers

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double ThreadCpu() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double ProcessCpu() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) n += e.file_size(ec);
  return n;
}

double Round(double v, int digits = 4) {
  if (v == 0 || !std::isfinite(v)) return v;
  const double mag =
      std::pow(10.0, digits - 1 - static_cast<int>(std::floor(std::log10(std::fabs(v)))));
  return std::round(v * mag) / mag;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}
double Min(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}

// The temporary directory, removed when the program dies (unless --keep); set in main().
std::string g_dir;
bool g_keep = false;
pid_t g_parent = 0;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "segments_bench: %s\n", what.c_str());
  if (!g_dir.empty() && !g_keep && getpid() == g_parent) {
    std::error_code ec;
    std::filesystem::remove_all(g_dir, ec);
  }
  json out{{"benchmark", "segments"}, {"ok", false}, {"error", what}};
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
  std::_Exit(1);
}
void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

void Log(const char* fmt, auto... args) {
  std::fprintf(stderr, "segments: ");
  std::fprintf(stderr, fmt, args...);
  std::fprintf(stderr, "\n");
}

// Deterministic, fast, the same on every platform (std:: distributions are not).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  int64_t Int(int64_t lo, int64_t hi) {  // [lo, hi]
    return lo + static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  bool Chance(double p) { return Unit() < p; }
  template <typename T, size_t N>
  const T& Pick(const T (&a)[N]) {
    return a[Next() % N];
  }
  // Picks by weight: pairs of (value, weight).
  template <typename T, size_t N>
  const T& Weighted(const std::pair<T, int> (&a)[N]) {
    int total = 0;
    for (const auto& [v, w] : a) total += w;
    int r = static_cast<int>(Next() % static_cast<uint64_t>(total));
    for (const auto& [v, w] : a) {
      if (r < w) return v;
      r -= w;
    }
    return a[N - 1].first;
  }
};

// ---------------------------------------------------------------------------------------------
// The data

const std::pair<const char*, int> kPlans[] = {
    {"free", 50}, {"trial", 20}, {"pro", 20}, {"enterprise", 10}};
const std::pair<const char*, int> kCountries[] = {{"US", 30}, {"DE", 12}, {"GB", 10}, {"FR", 8},
                                                  {"IN", 8},  {"BR", 6},  {"CA", 6},  {"ES", 5},
                                                  {"NL", 5},  {"JP", 5},  {"AU", 5}};
const char* const kIndustries[] = {"saas",      "ecommerce", "fintech",      "health",
                                   "education", "media",     "manufacturing"};
const char* const kSources[] = {"organic", "ads", "referral", "partner", "webinar"};
const char* const kFirst[] = {"Ann",  "Ben",   "Chloe", "David", "Emma", "Felix", "Grace", "Hugo",
                              "Ines", "Jonas", "Kim",   "Liam",  "Mia",  "Noah",  "Olga",  "Paul"};
const char* const kLast[] = {"Smith",  "Müller", "Martin",   "García", "Rossi",  "Nowak",
                             "Jensen", "Silva",  "Kowalski", "Dubois", "Tanaka", "Brown"};
const char* const kPaths[] = {"/",         "/blog/segmentation", "/blog/journeys",        "/docs",
                              "/features", "/integrations",      "/integrations/shopify", "/about",
                              "/customers"};
const double kRevenues[] = {19, 29, 49, 49.5, 99, 149.5, 199, 299, 499};

// Event kinds (weights for a typical contact; "evaluating" contacts see more of /pricing).
enum Kind { kPage, kEmailOpened, kEmailClicked, kVideo, kProduct, kOrder };
const std::pair<Kind, int> kKinds[] = {{kPage, 55},  {kEmailOpened, 10}, {kEmailClicked, 10},
                                       {kVideo, 10}, {kProduct, 10},     {kOrder, 5}};

std::string Q(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string TraitsJson(Rng& r, int64_t i, Millis created) {
  const char* first = r.Pick(kFirst);
  const char* last = r.Pick(kLast);
  const int64_t employees =
      static_cast<int64_t>(std::exp(r.Unit() * std::log(20000.0)));  // 1 .. 20000, log-uniform
  std::string email = "user" + std::to_string(i) + (r.Chance(0.3) ? "@gmail.com" : "@example.com");
  std::string t = "{";
  t += "\"email\":" + Q(email);
  t += ",\"first_name\":" + Q(first);
  t += ",\"last_name\":" + Q(last);
  t += ",\"company\":" + Q("Company " + std::to_string(i % 50000));
  t += ",\"plan\":" + Q(r.Weighted(kPlans));
  t += ",\"country\":" + Q(r.Weighted(kCountries));
  t += ",\"employees\":" + std::to_string(employees);
  t += ",\"industry\":" + Q(r.Pick(kIndustries));
  t += ",\"signup_source\":" + Q(r.Pick(kSources));
  t += ",\"seats\":" + std::to_string(r.Int(1, 200));
  t += ",\"created_at\":" + Q(core::FormatIso8601(created));
  if (r.Chance(0.05)) t += ",\"unsubscribed\":true";
  t += "}";
  return t;
}

struct Ev {
  std::string type, name, properties;
};

// One event's type, name and properties (JSON object text).
Ev MakeEvent(Rng& r, bool evaluating) {
  const Kind k = r.Weighted(kKinds);
  switch (k) {
    case kPage: {
      const bool pricing = r.Chance(evaluating ? 0.4 : 0.12);
      const std::string path = pricing ? "/pricing" : r.Pick(kPaths);
      return {"page", "Page Viewed",
              "{\"path\":" + Q(path) + ",\"url\":" + Q("https://example.com" + path) +
                  ",\"title\":" + Q(pricing ? "Pricing" : "Example") + "}"};
    }
    case kEmailOpened:
      return {"track", "Email Opened",
              "{\"campaign\":\"newsletter-" + std::to_string(r.Int(1, 12)) + "\"}"};
    case kEmailClicked:
      return {"track", "Email Link Clicked",
              "{\"campaign\":\"newsletter-" + std::to_string(r.Int(1, 12)) +
                  "\",\"url\":\"https://example.com/blog\"}"};
    case kVideo:
      return {"track", "Video Progress",
              "{\"video\":\"demo\",\"percent\":" + std::to_string(25 * r.Int(1, 4)) + "}"};
    case kProduct:
      return {"track", "Product Viewed",
              "{\"sku\":\"SKU-" + std::to_string(r.Int(1, 500)) +
                  "\",\"price\":" + std::to_string(r.Int(5, 500)) + "}"};
    case kOrder:
    default: {
      char rev[32];
      std::snprintf(rev, sizeof rev, "%g", r.Pick(kRevenues));
      return {"track", "Order Completed",
              "{\"order_id\":\"o" + std::to_string(r.Next() % 100000000) + "\",\"revenue\":" + rev +
                  ",\"currency\":\"USD\"}"};
    }
  }
}

// The body as the ingest parser would have stored it.
std::string EventBody(const Ev& e, const std::string& user, const std::string& message_id,
                      Millis ts, Millis received) {
  std::string b = "{\"type\":" + Q(e.type);
  if (e.type == "page")
    b += ",\"name\":\"Page\"";
  else
    b += ",\"event\":" + Q(e.name);
  b += ",\"userId\":" + Q(user) + ",\"messageId\":" + Q(message_id) +
       ",\"properties\":" + e.properties +
       ",\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"4.1.0\"}}" +
       ",\"timestamp\":" + Q(core::FormatIso8601(ts)) +
       ",\"receivedAt\":" + Q(core::FormatIso8601(received)) + "}";
  return b;
}

// ---------------------------------------------------------------------------------------------
// The segments

struct SegmentSpec {
  const char* id;
  const char* condition;
};

const SegmentSpec kSegments[] = {
    // traits
    {"pro-europe", R"(traits.plan == "pro" and traits.country in ["DE", "FR", "GB", "ES", "NL"])"},
    {"large-companies", R"(traits.employees >= 500)"},
    {"trial-users", R"(traits.plan == "trial")"},
    {"saas-fintech-teams", R"(traits.industry in ["saas", "fintech"] and traits.seats > 20)"},
    {"from-ads", R"(traits.signup_source == "ads" and not (traits.unsubscribed == true))"},
    {"gmail-users", R"(traits.email ends_with "@gmail.com")"},
    {"us-enterprise", R"(traits.country == "US" and traits.plan == "enterprise")"},
    // behaviour
    {"pricing-3x-7d",
     R"(count(event "Page Viewed" where properties.path == "/pricing" within 7d) >= 3)"},
    {"revenue-30d", R"(sum(properties.revenue of event "Order Completed" within 30d) > 100)"},
    {"clicked-14d", R"(event "Email Link Clicked" within 14d)"},
    {"lapsed-buyers", R"(last(event "Order Completed").timestamp < now - 30d)"},
    {"demo-watchers", R"(event "Video Progress" where properties.percent >= 75 within 7d)"},
    {"active-7d", R"(event "Page Viewed" within 7d or event "Email Link Clicked" within 7d)"},
    {"frequent-visitors", R"(count(event "Page Viewed" within 30d) >= 8)"},
    {"engaged-email",
     R"(count(event "Email Opened" within 30d) >= 2 or event "Email Link Clicked" within 30d)"},
    // both
    {"free-on-pricing",
     R"(traits.plan in ["trial", "free"] and count(event "Page Viewed" where properties.path == "/pricing" within 14d) >= 1)"},
    {"big-buyers",
     R"(traits.employees >= 200 and sum(properties.revenue of event "Order Completed" within 30d) > 0)"},
    {"integrations-interest",
     R"(event "Page Viewed" where properties.path starts_with "/integrations" within 14d and traits.plan != "enterprise")"},
    {"pro-gone-quiet", R"(traits.plan == "pro" and not (event "Page Viewed" within 14d))"},
    {"vip", R"(in segment "revenue-30d" and in segment "large-companies")"},
};
constexpr int kSegmentCount = static_cast<int>(std::size(kSegments));

segment::SegmentDef MakeDef(const std::string& id, const std::string& condition) {
  const std::string text = json{{"id", id}, {"condition", condition}}.dump();
  auto def = segment::ParseSegment(text, "segments_bench");
  if (!def) Die("segment " + id + ": " + def.error().ToString());
  return std::move(*def);
}

// The SQL reference queries: ?1 = workspace, ?2 = now - window, ?3 = now.
struct SqlSpec {
  const char* segment;
  Millis window;
  const char* sql;
};

const SqlSpec kSql[] = {
    {"pro-europe", 0,
     "SELECT count(*) FROM contacts WHERE ws = ?1 AND json_extract(traits, '$.plan') = 'pro' "
     "AND json_extract(traits, '$.country') IN ('DE', 'FR', 'GB', 'ES', 'NL')"},
    {"pricing-3x-7d", 7 * kDay,
     "SELECT count(*) FROM (SELECT contact_id FROM events WHERE ws = ?1 AND name = 'Page Viewed' "
     "AND timestamp > ?2 AND timestamp <= ?3 AND json_extract(body, '$.properties.path') = "
     "'/pricing' GROUP BY contact_id HAVING count(*) >= 3)"},
    {"revenue-30d", 30 * kDay,
     "SELECT count(*) FROM (SELECT contact_id FROM events WHERE ws = ?1 AND name = 'Order "
     "Completed' AND timestamp > ?2 AND timestamp <= ?3 GROUP BY contact_id HAVING "
     "total(CASE WHEN json_type(body, '$.properties.revenue') IN ('integer', 'real') THEN "
     "json_extract(body, '$.properties.revenue') END) > 100)"},
    {"clicked-14d", 14 * kDay,
     "SELECT count(DISTINCT contact_id) FROM events WHERE ws = ?1 AND name = 'Email Link "
     "Clicked' AND timestamp > ?2 AND timestamp <= ?3"},
};

// ---------------------------------------------------------------------------------------------
// Timing proxies

struct EngineTimes {
  double engine_s = 0;  // inside the engine's observer methods (its SQL included)
  uint64_t calls = 0;
};

// SQL time, by who ran the statement: every SQLite connection this process opens gets a trace
// callback (sqlite3_auto_extension + sqlite3_trace_v2) that times each statement from its first
// step to its end, and credits it to the scope the running thread is in. This needs nothing
// from the Store interface, so the benchmark keeps compiling as that interface grows.
enum Scope { kNoScope = 0, kApplierScope = 1, kEngineScope = 2 };
thread_local int t_scope = kNoScope;
struct SqlClock {
  double seconds[3] = {0, 0, 0};
  uint64_t statements[3] = {0, 0, 0};
};
SqlClock g_sql;  // written on the store's writer thread; read after WriteSync returns

struct Running {
  void* stmt;
  double start;
  int scope;
};
thread_local std::vector<Running> t_running;

int TraceStatement(unsigned type, void*, void* p, void*) {
  if (type == SQLITE_TRACE_STMT) {
    if (t_scope == kNoScope) return 0;
    for (const Running& r : t_running)
      if (r.stmt == p) return 0;  // a trigger's sub-statement: the outer one is timed
    if (t_running.size() < 64) t_running.push_back({p, Now(), t_scope});
  } else if (type == SQLITE_TRACE_PROFILE) {
    for (size_t i = 0; i < t_running.size(); ++i) {
      if (t_running[i].stmt != p) continue;
      const int scope = t_running[i].scope;
      g_sql.seconds[scope] += Now() - t_running[i].start;
      ++g_sql.statements[scope];
      t_running.erase(t_running.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  return 0;
}

int TraceConnection(sqlite3* db, const char**, const struct sqlite3_api_routines*) {
  sqlite3_trace_v2(db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE, TraceStatement, nullptr);
  return SQLITE_OK;
}

struct ScopeGuard {
  int saved;
  explicit ScopeGuard(int scope) : saved(t_scope) { t_scope = scope; }
  ~ScopeGuard() { t_scope = saved; }
};

// Tells the engine of what Applier::Apply just stored, as the Applier does when the engine is
// its observer (per message, in order: the trait change, then the event), timing only the
// engine's calls; the SQL the engine runs meanwhile is credited to kEngineScope. Calling the
// engine's methods, rather than implementing profile::ContactObserver, keeps this program
// compiling as that interface grows.
template <typename E>
Status ContactChanged(E& engine, store::WriteTxn& t, const store::Contact& c) {
  if constexpr (requires { engine.OnContactChanged(t, c, std::string_view()); })
    return engine.OnContactChanged(t, c, std::string_view());  // as the Applier passes it
  else
    return engine.OnContactChanged(t, c);
}

Status NotifyEngine(segment::Engine& engine, store::WriteTxn& t, WorkspaceId ws,
                    const profile::ApplyResult& applied, EngineTimes& times) {
  for (size_t i = 0; i < applied.events.size(); ++i) {
    const profile::AppliedEvent& a = applied.events[i];
    const ingest::Message& m = *a.message;
    // The Applier hints the engine once it knows a message's contact, then stores the event
    // (a few microseconds of SQL) before OnEvent. Here the events are stored already: the
    // hint comes one event ahead, so the engine's work on this one stands for that SQL.
    if (i + 1 < applied.events.size()) {
      ScopeGuard scope(kEngineScope);
      const double t0 = Now();
      engine.Prefetch(applied.events[i + 1].contact);
      times.engine_s += Now() - t0;
    }
    if (m.type == ingest::MessageType::kIdentify && !m.traits.empty()) {
      NUDGE_ASSIGN_OR_RETURN(auto contact, t.GetContact(a.contact));  // not the engine's
      if (!contact) return Status::Internal("contact vanished");
      ScopeGuard scope(kEngineScope);
      const double t0 = Now();
      Status s = ContactChanged(engine, t, *contact);
      times.engine_s += Now() - t0;
      ++times.calls;
      if (!s.ok()) return s;
    }
    store::Event e;
    e.id = a.event_id;
    e.workspace = ws;
    e.contact = a.contact;
    e.message_id = m.message_id;
    e.type = std::string(ingest::MessageTypeName(m.type));
    e.name = m.event;
    e.timestamp = m.timestamp;
    e.received_at = m.received_at;
    e.body = m.body;
    ScopeGuard scope(kEngineScope);
    const double t0 = Now();
    Status s = engine.OnEvent(t, e);
    times.engine_s += Now() - t0;
    ++times.calls;
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Setup (child process)

Millis T0() { return *core::ParseIso8601("2026-11-02T09:00:00Z"); }

// Writes contacts and events straight into the store, then starts an engine once.
json Setup(const Args& args, const std::string& db) {
  auto opened = store::OpenSqliteStore({.path = db});
  if (!opened) Die("open store: " + opened.error().ToString());
  std::unique_ptr<store::Store> st = std::move(*opened);
  const Millis t0 = T0();
  WorkspaceId ws = 0;
  Check(st->WriteSync([&](store::WriteTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(ws, t.InsertWorkspace({0, "bench", "wk", "ak", t0}));
    for (const auto& s : kSegments) {
      auto def = MakeDef(s.id, s.condition);
      NUDGE_ASSIGN_OR_RETURN(int64_t v,
                             t.PutDefinition(ws, "segment", def.id, segment::ToJson(def), t0));
      (void)v;
    }
    return Status::Ok();
  }),
        "workspace and definitions");

  // Contacts and their events, generated here while the writer thread stores the previous
  // batches (at most 3 in flight).
  struct Gen {
    store::Contact contact;
    std::vector<store::Event> events;
  };
  std::mutex mu;
  std::condition_variable cv;
  int inflight = 0;
  Status failed;
  uint64_t events_written = 0;
  Rng rng(args.seed);
  const double g0 = Now();
  constexpr int64_t kPerWrite = 4000;
  double last_log = g0;
  for (int64_t first = 1; first <= args.contacts; first += kPerWrite) {
    auto batch = std::make_shared<std::vector<Gen>>();
    const int64_t last = std::min(args.contacts, first + kPerWrite - 1);
    batch->reserve(static_cast<size_t>(last - first + 1));
    for (int64_t i = first; i <= last; ++i) {
      Gen g;
      const std::string user = "u" + std::to_string(i);
      // 12 % of contacts are evaluating the product now: their events are recent and they
      // read the pricing page more.
      const bool evaluating = rng.Chance(0.12);
      const int n = static_cast<int>(rng.Int(5, 20));
      const Millis span = (evaluating ? 14 : kHistoryDays) * kDay;
      std::vector<Millis> times(static_cast<size_t>(n));
      for (auto& t : times)
        t = t0 - 1 - static_cast<Millis>(rng.Next() % static_cast<uint64_t>(span));
      std::sort(times.begin(), times.end());
      const Millis created = times.front() - static_cast<Millis>(rng.Next() % (300 * kDay));
      g.contact.workspace = ws;
      g.contact.user_id = user;
      g.contact.traits = TraitsJson(rng, i, created);
      g.contact.email = "user" + std::to_string(i) +
                        (g.contact.traits.find("@gmail.com") != std::string::npos ? "@gmail.com"
                                                                                  : "@example.com");
      g.contact.source = "api";
      g.contact.created_at = created;
      g.contact.last_seen_at = times.back();
      g.events.reserve(static_cast<size_t>(n));
      for (int k = 0; k < n; ++k) {
        const Ev ev = MakeEvent(rng, evaluating);
        store::Event e;
        e.workspace = ws;
        e.message_id = "g" + std::to_string(i) + "-" + std::to_string(k);
        e.type = ev.type;
        e.name = ev.name;
        e.timestamp = times[static_cast<size_t>(k)];
        e.received_at = e.timestamp + 150;
        e.body = EventBody(ev, user, e.message_id, e.timestamp, e.received_at);
        g.events.push_back(std::move(e));
      }
      batch->push_back(std::move(g));
    }
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return inflight < 3; });
      if (!failed.ok()) break;
      ++inflight;
    }
    st->Write(
        [batch, &events_written](store::WriteTxn& t) -> Status {
          for (Gen& g : *batch) {
            NUDGE_ASSIGN_OR_RETURN(ContactId id, t.InsertContact(g.contact));
            for (store::Event& e : g.events) {
              e.contact = id;
              NUDGE_ASSIGN_OR_RETURN(bool inserted, t.InsertEvent(e));
              if (!inserted) return Status::Internal("duplicate generated messageId");
              ++events_written;
            }
          }
          return Status::Ok();
        },
        [&](Status s) {
          std::lock_guard lock(mu);
          if (!s.ok() && failed.ok()) failed = s;
          --inflight;
          cv.notify_all();
        });
    if (Now() - last_log > 10) {
      last_log = Now();
      Log("setup: %lld/%lld contacts generated (%.0f s)", static_cast<long long>(last),
          static_cast<long long>(args.contacts), last_log - g0);
    }
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return inflight == 0; });
  }
  Check(failed, "writing contacts and events");
  const double generate_s = Now() - g0;
  Log("setup: %lld contacts and %llu events stored in %.1f s",
      static_cast<long long>(args.contacts), static_cast<unsigned long long>(events_written),
      generate_s);

  // The first start: everyone evaluated; memberships, stages and derived events stored.
  core::VirtualClock clock(t0);
  profile::ContactCache cache;
  segment::Engine engine(*st, cache, clock, nullptr,
                         segment::EngineOptions{.background_threads = false});
  const double l0 = Now();
  Check(engine.Load(), "first start (engine.Load)");
  const double first_start_s = Now() - l0;
  engine.Stop();
  int64_t client = 0, derived = 0;
  Check(st->Read([&](store::ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(client, t.CountEvents(ws, store::EventOrigin::kClient));
    NUDGE_ASSIGN_OR_RETURN(derived, t.CountEvents(ws, store::EventOrigin::kNudge));
    return Status::Ok();
  }),
        "count events");
  Log("setup: first start (evaluate everyone, store memberships and derived events) %.1f s, "
      "%lld derived events",
      first_start_s, static_cast<long long>(derived));
  st->Close();
  return json{{"workspace", ws},
              {"generate_s", Round(generate_s)},
              {"rows_per_s",
               Round((static_cast<double>(args.contacts) + static_cast<double>(events_written)) /
                     generate_s)},
              {"contacts", args.contacts},
              {"client_events", client},
              {"first_start_s", Round(first_start_s)},
              {"derived_events", derived},
              {"note",
               "contacts and events written straight into the store (InsertContact/InsertEvent, "
               "4000 contacts per write); first start = engine.Load() evaluating every contact "
               "for the first time, storing memberships, stages and the Segment Entered / Stage "
               "Changed events that follow"}};
}

// ---------------------------------------------------------------------------------------------
// SQL reference

struct SqlResult {
  int64_t count = -1;
  std::vector<double> runs;
  std::string error;
};

SqlResult RunSql(sqlite3* db, const char* sql, WorkspaceId ws, Millis from, Millis now, int runs) {
  SqlResult out;
  for (int i = 0; i < runs; ++i) {
    sqlite3_stmt* stmt = nullptr;
    const double t0 = Now();
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
      out.error = sqlite3_errmsg(db);
      return out;
    }
    sqlite3_bind_int64(stmt, 1, ws);
    if (sqlite3_bind_parameter_count(stmt) >= 3) {
      sqlite3_bind_int64(stmt, 2, from);
      sqlite3_bind_int64(stmt, 3, now);
    }
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
      out.count = sqlite3_column_int64(stmt, 0);
    else
      out.error = sqlite3_errmsg(db);
    sqlite3_finalize(stmt);
    out.runs.push_back(Now() - t0);
    if (!out.error.empty()) return out;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Measurement (parent process)

// spdlog lines go to stderr; a copy is kept to read the engine's own load figures.
std::ostringstream g_log;

std::string RandomMessage(Rng& r, int64_t contacts, const std::string& message_id, Millis ts) {
  const std::string user = "u" + std::to_string(r.Int(1, contacts));
  const std::string when = core::FormatIso8601(ts);
  if (r.Chance(0.05)) {
    return "{\"type\":\"identify\",\"userId\":" + Q(user) + ",\"messageId\":" + Q(message_id) +
           ",\"traits\":{\"plan\":" + Q(r.Weighted(kPlans)) +
           ",\"seats\":" + std::to_string(r.Int(1, 200)) + "},\"timestamp\":" + Q(when) + "}";
  }
  const Ev ev = MakeEvent(r, r.Chance(0.3));
  std::string m = "{\"type\":" + Q(ev.type);
  if (ev.type == "page")
    m += ",\"name\":\"Page\"";
  else
    m += ",\"event\":" + Q(ev.name);
  m += ",\"userId\":" + Q(user) + ",\"messageId\":" + Q(message_id) +
       ",\"properties\":" + ev.properties +
       ",\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"4.1.0\"}}" +
       ",\"timestamp\":" + Q(when) + "}";
  return m;
}

struct IncrementalRun {
  int64_t messages = 0, accepted = 0;
  int batches = 0;
  double wall_s = 0;       // the store writes (apply + commit) and due timers, parsing excluded
  double apply_s = 0;      // inside the write functions (Applier::Apply), on the writer thread
  double apply_cpu_s = 0;  // the writer thread's CPU time inside them
  double commit_s = 0;     // WriteSync's wall time beyond the write function: queue + commit
  double run_due_s = 0;    // Engine::RunDue for timers that came due as the clock moved
  double process_cpu_s = 0;
  double applier_sql_s = 0;  // SQL run by the Applier itself (identity lookups, inserts, ...)
  double engine_sql_s = 0;   // SQL run by the engine inside its observer methods
  uint64_t applier_statements = 0, engine_statements = 0;
  EngineTimes engine;
  uint64_t evaluations = 0, changes = 0;
  std::map<std::string, int64_t> derived;  // events the engine stored, by name
  // The engine's in-memory rate in each quarter of the run (events / (engine_s - its SQL)):
  // how much the figure moves within one run on this machine.
  std::vector<double> round_events_per_s_per_core;
};

int64_t MaxEventId(sqlite3* db) {
  sqlite3_stmt* q = nullptr;
  int64_t id = 0;
  if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM events", -1, &q, nullptr) ==
          SQLITE_OK &&
      sqlite3_step(q) == SQLITE_ROW)
    id = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return id;
}

// Events nudge itself stored after event id `after`, by name.
std::map<std::string, int64_t> DerivedSince(sqlite3* db, int64_t after) {
  std::map<std::string, int64_t> out;
  sqlite3_stmt* q = nullptr;
  if (sqlite3_prepare_v2(db,
                         "SELECT name, count(*) FROM events WHERE id > ?1 AND message_id LIKE "
                         "'nudge:%' GROUP BY name",
                         -1, &q, nullptr) != SQLITE_OK)
    return out;
  sqlite3_bind_int64(q, 1, after);
  while (sqlite3_step(q) == SQLITE_ROW)
    out[reinterpret_cast<const char*>(sqlite3_column_text(q, 0))] = sqlite3_column_int64(q, 1);
  sqlite3_finalize(q);
  return out;
}

IncrementalRun RunIncremental(store::Store& st, sqlite3* sdb, WorkspaceId ws,
                              core::VirtualClock& clock, segment::Engine* engine,
                              core::MetricsRegistry* metrics, const Args& args, uint64_t seed,
                              const std::string& tag) {
  IncrementalRun run;
  EngineTimes& times = run.engine;
  // No observer: the engine, when there is one, is told right after Apply (NotifyEngine).
  profile::Applier applier(profile::ProfileOptions{}, nullptr);
  core::Counter* evals =
      metrics ? &metrics->GetCounter("nudge_segment_evaluations_total", "") : nullptr;
  core::Counter* changes =
      metrics ? &metrics->GetCounter("nudge_segment_changes_total", "") : nullptr;
  const uint64_t evals0 = evals ? evals->Value() : 0, changes0 = changes ? changes->Value() : 0;
  Rng rng(seed);
  const int64_t first_event = MaxEventId(sdb);
  const SqlClock sql0 = g_sql;
  const double cpu0 = ProcessCpu();
  const int64_t batches = (args.events + args.batch - 1) / args.batch;
  constexpr int64_t kRounds = 4;
  int64_t round_accepted = 0;
  double round_engine_s = 0, round_sql_s = g_sql.seconds[kEngineScope];
  for (int64_t b = 0; b < batches; ++b) {
    clock.Advance(kSecond);
    const Millis now = clock.NowMillis();
    // Build and parse the batch (not timed: ingest's HTTP threads do this).
    const int64_t n = std::min<int64_t>(args.batch, args.events - b * args.batch);
    std::string body = "{\"batch\":[";
    for (int64_t j = 0; j < n; ++j) {
      if (j) body += ',';
      body += RandomMessage(rng, args.contacts,
                            tag + "-" + std::to_string(b) + "-" + std::to_string(j), now - 5);
    }
    body += "]}";
    ingest::Limits limits;
    limits.max_batch_bytes = 64 << 20;
    auto parsed = ingest::ParseRequest(ingest::Endpoint::kBatch, body, now, limits);
    if (!parsed) Die("parse incremental batch: " + parsed.error().ToString());
    run.messages += n;

    const double w0 = Now();
    double fn_s = 0;
    Status s = st.WriteSync([&](store::WriteTxn& t) -> Status {
      ScopeGuard scope(kApplierScope);
      const double f0 = Now(), c0 = ThreadCpu();
      auto r = applier.Apply(t, ws, parsed->messages);
      if (r && engine) NUDGE_TRY(NotifyEngine(*engine, t, ws, *r, times));
      run.apply_cpu_s += ThreadCpu() - c0;
      fn_s = Now() - f0;
      if (!r) return r.error();
      run.accepted += static_cast<int64_t>(r->accepted);
      return Status::Ok();
    });
    const double w1 = Now();
    Check(s, "incremental write");
    run.apply_s += fn_s;
    run.commit_s += (w1 - w0) - fn_s;
    run.wall_s += w1 - w0;
    if (engine) {
      // Windows slide as the clock moves: run what came due, as the timer thread would.
      const double d0 = Now();
      for (int guard = 0; guard < 1000; ++guard) {
        auto due = engine->NextDue();
        if (!due || *due > now) break;
        Check(engine->RunDue(), "RunDue");
      }
      const double d = Now() - d0;
      run.run_due_s += d;
      run.wall_s += d;
    }
    ++run.batches;
    if (engine && batches >= kRounds && (b + 1) % (batches / kRounds) == 0 &&
        static_cast<int64_t>(run.round_events_per_s_per_core.size()) < kRounds) {
      const double eval_s =
          (times.engine_s - round_engine_s) - (g_sql.seconds[kEngineScope] - round_sql_s);
      if (eval_s > 0)
        run.round_events_per_s_per_core.push_back(
            static_cast<double>(run.accepted - round_accepted) / eval_s);
      round_accepted = run.accepted;
      round_engine_s = times.engine_s;
      round_sql_s = g_sql.seconds[kEngineScope];
    }
  }
  run.process_cpu_s = ProcessCpu() - cpu0;
  run.applier_sql_s = g_sql.seconds[kApplierScope] - sql0.seconds[kApplierScope];
  run.engine_sql_s = g_sql.seconds[kEngineScope] - sql0.seconds[kEngineScope];
  run.applier_statements = g_sql.statements[kApplierScope] - sql0.statements[kApplierScope];
  run.engine_statements = g_sql.statements[kEngineScope] - sql0.statements[kEngineScope];
  run.derived = DerivedSince(sdb, first_event);
  if (evals) run.evaluations = evals->Value() - evals0;
  if (changes) run.changes = changes->Value() - changes0;
  return run;
}

json IncrementalJson(const IncrementalRun& r, bool with_engine) {
  const double ev = static_cast<double>(r.accepted);
  const double applier_cpu_s = r.apply_s - r.engine.engine_s - r.applier_sql_s;
  json j{{"messages", r.messages},
         {"accepted", r.accepted},
         {"writes", r.batches},
         {"wall_s", Round(r.wall_s)},
         {"events_per_s", Round(ev / r.wall_s)},
         {"us_per_event", Round(r.wall_s / ev * 1e6)},
         {"breakdown_us_per_event",
          {{"commit", Round(r.commit_s / ev * 1e6)},
           {"applier_sql", Round(r.applier_sql_s / ev * 1e6)},
           {"applier_other", Round(applier_cpu_s / ev * 1e6)},
           {"engine_sql", Round(r.engine_sql_s / ev * 1e6)},
           {"engine_evaluation", Round((r.engine.engine_s - r.engine_sql_s) / ev * 1e6)},
           {"timers_run_due", Round(r.run_due_s / ev * 1e6)}}},
         {"apply_s", Round(r.apply_s)},
         {"apply_cpu_s", Round(r.apply_cpu_s)},
         {"applier_sql_s", Round(r.applier_sql_s)},
         {"applier_sql_statements", r.applier_statements},
         {"commit_s", Round(r.commit_s)},
         {"process_cpu_s", Round(r.process_cpu_s)}};
  if (with_engine) {
    const double eval_s = r.engine.engine_s - r.engine_sql_s;
    j["run_due_s"] = Round(r.run_due_s);
    j["engine"] = json{
        {"calls", r.engine.calls},
        {"seconds", Round(r.engine.engine_s)},
        {"sql_s", Round(r.engine_sql_s)},
        {"sql_statements", r.engine_statements},
        {"evaluation_s", Round(eval_s)},
        {"us_per_event", Round(r.engine.engine_s / ev * 1e6)},
        {"evaluation_us_per_event", Round(eval_s / ev * 1e6)},
        {"events_per_s_per_core", Round(ev / eval_s)},
        {"events_per_s_per_core_incl_own_sql", Round(ev / r.engine.engine_s)},
        {"quarters_events_per_s_per_core",
         [&] {
           json q = json::array();
           for (double v : r.round_events_per_s_per_core) q.push_back(Round(v));
           return q;
         }()},
        {"contact_evaluations", r.evaluations},
        {"membership_changes", r.changes},
        {"derived_events", r.derived},
        {"note",
         "seconds: inside the engine's observer methods (Engine::OnEvent, OnContactChanged), "
         "called in the write right after Applier::Apply, single-threaded on the store's "
         "writer thread; sql_s: the SQLite statements it ran "
         "meanwhile (membership rows, derived events and their processing, stages), timed by a "
         "sqlite3_trace_v2 callback; evaluation_s = seconds - sql_s: aggregates, conditions, "
         "timers, building derived events, in memory; quarters_events_per_s_per_core: the same "
         "for each quarter of the run, to show how much it moves on this machine"}};
  }
  return j;
}

int Measure(const Args& args, const std::string& dir, const std::string& db, const json& setup) {
  json problems = json::array();
  const Millis t0 = T0();
  const WorkspaceId ws = setup.at("workspace").get<WorkspaceId>();
  const int64_t n = args.contacts;

  // ---- load (a restart) ----
  const int64_t rss_start = ProcStatusBytes("VmRSS");
  sqlite3_auto_extension(reinterpret_cast<void (*)()>(TraceConnection));
  auto opened = store::OpenSqliteStore({.path = db});
  if (!opened) Die("open store: " + opened.error().ToString());
  std::unique_ptr<store::Store> st = std::move(*opened);
  core::VirtualClock clock(t0);
  core::MetricsRegistry metrics;
  auto cache = std::make_unique<profile::ContactCache>();
  auto engine = std::make_unique<segment::Engine>(
      *st, *cache, clock, &metrics, segment::EngineOptions{.background_threads = false});
  core::Counter& evals = metrics.GetCounter("nudge_segment_evaluations_total", "");
  core::Counter& changes = metrics.GetCounter("nudge_segment_changes_total", "");
  const int64_t rss_before = ProcStatusBytes("VmRSS");
  Log("load: engine.Load() over %lld contacts", static_cast<long long>(n));
  const double l0 = Now(), lc0 = ProcessCpu();
  Check(engine->Load(), "engine.Load");
  const double load_s = Now() - l0, load_cpu = ProcessCpu() - lc0;
  const int64_t rss_after = ProcStatusBytes("VmRSS");
  const uint64_t load_evals = evals.Value(), load_changes = changes.Value();
  size_t cache_bytes = 0, cache_contacts = 0, terms = 0;
  const segment::Engine::ColumnStats columns = engine->TraitColumnStats();
  {
    std::shared_lock lock(cache->mutex);
    cache_bytes = cache->MemoryBytes();
    cache_contacts = cache->size();
    terms = cache->registry().by_slot().size();
  }
  int64_t replay_ms = -1, events_total = 0;
  {
    std::smatch m;
    const std::string text = g_log.str();
    static const std::regex re(R"(replayed (\d+) events into \d+ behavioural terms in (\d+) ms)");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
         ++it) {
      events_total = std::stoll((*it)[1]);
      replay_ms = std::stoll((*it)[2]);
    }
  }
  if (static_cast<int64_t>(cache_contacts) != n)
    problems.push_back("the cache holds " + std::to_string(cache_contacts) + " contacts, not " +
                       std::to_string(n));
  if (load_changes != 0)
    problems.push_back("the restart changed " + std::to_string(load_changes) +
                       " memberships (expected none: same data, same time)");
  Log("load: %.1f s (%lld events replayed in %lld ms), cache %.0f MB", load_s,
      static_cast<long long>(events_total), static_cast<long long>(replay_ms),
      static_cast<double>(cache_bytes) / 1e6);
  json load{
      {"seconds", Round(load_s)},
      {"cpu_s", Round(load_cpu)},
      {"contacts", cache_contacts},
      {"events_replayed", events_total},
      {"replay_s_from_engine_log", replay_ms >= 0 ? json(Round(replay_ms / 1000.0)) : json()},
      {"reconcile_and_rest_s", replay_ms >= 0 ? json(Round(load_s - replay_ms / 1000.0)) : json()},
      {"events_replayed_per_s",
       replay_ms > 0 ? json(Round(static_cast<double>(events_total) / (replay_ms / 1000.0)))
                     : json()},
      {"contact_evaluations", load_evals},
      {"behavioural_terms", terms},
      {"trait_columns",
       {{"kept", columns.kept},
        {"bytes", columns.bytes},
        {"bytes_per_contact", Round(static_cast<double>(columns.bytes) / std::max<int64_t>(n, 1))},
        {"note",
         "trait paths the segments read, kept as dictionary-encoded columns (2 bytes per "
         "contact each; a path with arrays, objects or more than 65,000 values is not kept)"}}},
      {"note",
       "a restart: Engine::Load() on a fresh ContactCache = contacts, memberships and "
       "stages read from SQLite, every event replayed into the aggregates (the engine's "
       "log line gives that part), then every contact evaluated once (reconcile)"}};
  json memory{{"rss_before_load_bytes", rss_before},
              {"rss_after_load_bytes", rss_after},
              {"rss_at_start_bytes", rss_start},
              {"rss_bytes_per_contact", Round(static_cast<double>(rss_after - rss_before) / n)},
              {"cache_memory_bytes", cache_bytes},
              {"cache_bytes_per_contact", Round(static_cast<double>(cache_bytes) / n)},
              {"rss_mb_per_million_contacts",
               Round(static_cast<double>(rss_after - rss_before) / n * 1e6 / 1048576.0)},
              {"huge_pages_requested", core::HugePagesRequested()},
              {"anon_huge_page_bytes", core::AnonHugePageBytes()},
              {"note",
               "VmRSS before and after Engine::Load (store already open); includes SQLite's page "
               "caches (64 MiB writer, 16 MiB per reader), filled during the load, and the "
               "engine's bitmaps and per-contact runtime beside the ContactCache. "
               "huge_pages_requested: malloc was started with transparent huge pages, as "
               "nudge serve does (core/huge_pages.h; NUDGE_HUGE_PAGES=0 turns it off); "
               "anon_huge_page_bytes: how much of the memory the kernel backs with them"}};

  // ---- segments as stored ----
  std::map<std::string, uint64_t> members;
  uint64_t members_total = 0;
  for (const auto& info : engine->ListSegments(ws)) {
    members[info.def.id] = info.members;
    members_total += info.members;
    if (info.status != "ready") problems.push_back("segment " + info.def.id + " is " + info.status);
  }
  if (members.size() != static_cast<size_t>(kSegmentCount))
    problems.push_back("the engine has " + std::to_string(members.size()) + " segments, not " +
                       std::to_string(kSegmentCount));

  // ---- full rebuild ----
  std::vector<double> rebuild_runs;
  uint64_t rebuild_members = 0;
  for (int i = 0; i < args.rebuilds; ++i) {
    const double r0 = Now();
    rebuild_members = engine->EvaluateAllForBenchmark(ws);
    rebuild_runs.push_back(Now() - r0);
    Log("rebuild %d: %.3f s", i + 1, rebuild_runs.back());
  }
  if (rebuild_members != members_total)
    problems.push_back("rebuild found " + std::to_string(rebuild_members) +
                       " memberships, the engine holds " + std::to_string(members_total));
  const double rebuild_s = Min(rebuild_runs);
  const double evaluations = static_cast<double>(n) * kSegmentCount;
  json rebuild{{"seconds", Round(rebuild_s)},
               {"median_s", Round(Median(rebuild_runs))},
               {"runs_s", json::array()},
               {"contacts", n},
               {"segments", kSegmentCount},
               {"evaluations_per_s", Round(evaluations / rebuild_s)},
               {"ns_per_evaluation", Round(rebuild_s / evaluations * 1e9)},
               {"memberships", rebuild_members},
               {"memberships_held", members_total},
               {"note",
                "Engine::EvaluateAllForBenchmark: every segment's condition for every contact, "
                "in memory, one thread; seconds = the fastest of the runs"}};
  for (double r : rebuild_runs) rebuild["runs_s"].push_back(Round(r));

  // ---- each segment alone (PreviewCondition) ----
  json segments = json::array();
  std::map<std::string, double> preview_s;
  for (const auto& s : kSegments) {
    std::vector<double> runs;
    uint64_t count = 0;
    for (int i = 0; i < 2; ++i) {
      const double p0 = Now();
      auto p = engine->PreviewCondition(ws, s.condition, 0);
      runs.push_back(Now() - p0);
      if (!p) Die(std::string("preview ") + s.id + ": " + p.error().ToString());
      count = p->count;
    }
    preview_s[s.id] = Min(runs);
    if (count != members[s.id])
      problems.push_back(std::string("segment ") + s.id + ": preview counts " +
                         std::to_string(count) + ", the engine holds " +
                         std::to_string(members[s.id]));
    segments.push_back({{"id", s.id},
                        {"condition", s.condition},
                        {"members", members[s.id]},
                        {"share", Round(static_cast<double>(members[s.id]) / n, 3)},
                        {"alone_s", Round(preview_s[s.id])}});
  }

  // ---- the SQL reference ----
  sqlite3* sdb = nullptr;
  if (sqlite3_open_v2(db.c_str(), &sdb, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
    Die("sqlite3_open_v2: " + std::string(sqlite3_errmsg(sdb)));
  sqlite3_busy_timeout(sdb, 10000);
  sqlite3_exec(sdb, "PRAGMA cache_size = -16384", nullptr, nullptr, nullptr);
  json sql = json::array();
  double worst_speedup = 1e300;
  json speedups = json::object();
  for (const auto& q : kSql) {
    Log("sql: %s", q.segment);
    SqlResult r = RunSql(sdb, q.sql, ws, t0 - q.window, t0, args.sql_runs);
    if (!r.error.empty()) Die(std::string("sql ") + q.segment + ": " + r.error);
    const uint64_t engine_count = members[q.segment];
    const bool match = r.count == static_cast<int64_t>(engine_count);
    if (!match)
      problems.push_back(std::string("sql ") + q.segment + ": SQL counts " +
                         std::to_string(r.count) + ", the engine " + std::to_string(engine_count));
    const double sql_s = Min(r.runs);
    const double speedup = sql_s / preview_s[q.segment];
    worst_speedup = std::min(worst_speedup, speedup);
    speedups[q.segment] = Round(speedup);
    json item{{"segment", q.segment},
              {"condition", ""},
              {"sql", q.sql},
              {"engine_members", engine_count},
              {"sql_count", r.count},
              {"counts_match", match},
              {"sql_s", Round(sql_s)},
              {"sql_runs_s", json::array()},
              {"engine_s", Round(preview_s[q.segment])},
              {"engine_share_of_rebuild_s", Round(rebuild_s / kSegmentCount)},
              {"engine_vs_sql", Round(speedup)},
              {"rebuild_share_vs_sql", Round(sql_s / (rebuild_s / kSegmentCount))}};
    for (const auto& s : kSegments)
      if (std::string(s.id) == q.segment) item["condition"] = s.condition;
    for (double x : r.runs) item["sql_runs_s"].push_back(Round(x));
    sql.push_back(std::move(item));
  }
  // The same with an index that serves the event queries (not in nudge's schema), dropped after.
  json indexed{{"index", "CREATE INDEX bench_events_name_ts ON events(ws, name, timestamp)"}};
  {
    Log("sql: building an index on events(ws, name, timestamp) for the indexed variant");
    const double i0 = Now();
    char* err = nullptr;
    if (sqlite3_exec(sdb, "CREATE INDEX bench_events_name_ts ON events(ws, name, timestamp)",
                     nullptr, nullptr, &err) != SQLITE_OK)
      Die(std::string("create index: ") + (err ? err : "?"));
    indexed["create_index_s"] = Round(Now() - i0);
    json rows = json::array();
    for (size_t k = 0; k < std::size(kSql); ++k) {
      const auto& q = kSql[k];
      if (q.window == 0) continue;  // the trait query does not use it
      SqlResult r = RunSql(sdb, q.sql, ws, t0 - q.window, t0, args.sql_runs);
      if (!r.error.empty()) Die(std::string("sql ") + q.segment + ": " + r.error);
      const bool match = r.count == static_cast<int64_t>(members[q.segment]);
      if (!match)
        problems.push_back(std::string("sql (indexed) ") + q.segment + ": SQL counts " +
                           std::to_string(r.count) + ", the engine " +
                           std::to_string(members[q.segment]));
      const double sql_s = Min(r.runs);
      rows.push_back({{"segment", q.segment},
                      {"sql_count", r.count},
                      {"counts_match", match},
                      {"sql_s", Round(sql_s)},
                      {"engine_s", Round(preview_s[q.segment])},
                      {"engine_vs_sql", Round(sql_s / preview_s[q.segment])}});
    }
    indexed["queries"] = std::move(rows);
    if (sqlite3_exec(sdb, "DROP INDEX bench_events_name_ts", nullptr, nullptr, &err) != SQLITE_OK)
      Die(std::string("drop index: ") + (err ? err : "?"));
  }

  // ---- the real background path for a new segment ----
  json background = json::array();
  const SegmentSpec kNew[] = {
      {"bench-new-trait", R"(traits.plan == "enterprise" and traits.employees >= 1000)"},
      {"bench-new-behaviour", R"(count(event "Product Viewed" within 14d) >= 2)"},
  };
  for (const auto& s : kNew) {
    Log("background: PutSegment %s", s.id);
    const uint64_t c0 = changes.Value();
    const double p0 = Now();
    auto info = engine->PutSegment(ws, MakeDef(s.id, s.condition));
    if (!info) Die(std::string("PutSegment ") + s.id + ": " + info.error().ToString());
    engine->WaitIdle();
    const double put_s = Now() - p0;
    auto got = engine->GetSegment(ws, s.id);
    if (!got) Die("GetSegment: " + got.error().ToString());
    auto p = engine->PreviewCondition(ws, s.condition, 0);
    if (!p) Die("preview: " + p.error().ToString());
    int64_t rows = 0;
    Check(st->Read([&](store::ReadTxn& t) -> Status {
      for (ContactId after = 0;;) {
        NUDGE_ASSIGN_OR_RETURN(auto page, t.ListSegmentMembers(ws, s.id, after, 100000));
        rows += static_cast<int64_t>(page.size());
        if (page.size() < 100000) break;
        after = page.back().contact;
      }
      return Status::Ok();
    }),
          "count membership rows");
    if (got->status != "ready" || got->members != p->count ||
        rows != static_cast<int64_t>(got->members))
      problems.push_back(std::string("background ") + s.id + ": " + got->status + ", " +
                         std::to_string(got->members) + " members, preview " +
                         std::to_string(p->count) + ", " + std::to_string(rows) + " rows");
    background.push_back({{"segment", s.id},
                          {"condition", s.condition},
                          {"seconds", Round(put_s)},
                          {"members", got->members},
                          {"membership_rows", rows},
                          {"membership_changes", changes.Value() - c0},
                          {"new_behavioural_term", std::string(s.id) == "bench-new-behaviour"},
                          {"contacts_per_s", Round(static_cast<double>(n) / put_s)}});
    Check(engine->DeleteSegment(ws, s.id), "DeleteSegment");
  }

  // ---- incremental ----
  Log("incremental: %lld messages with the engine", static_cast<long long>(args.events));
  const IncrementalRun with =
      RunIncremental(*st, sdb, ws, clock, engine.get(), &metrics, args, args.seed ^ 0xabcdef, "iw");
  Log("incremental: %.0f events/s end to end, engine %.1f us/event (%.1f us of it in its SQL)",
      static_cast<double>(with.accepted) / with.wall_s, with.engine.engine_s / with.accepted * 1e6,
      with.engine_sql_s / with.accepted * 1e6);
  // Without segments at all (the engine no longer matches the store after this: last step).
  Log("incremental: %lld messages without the engine", static_cast<long long>(args.events));
  const IncrementalRun without =
      RunIncremental(*st, sdb, ws, clock, nullptr, nullptr, args, args.seed ^ 0x123456, "io");
  const double ev_with = static_cast<double>(with.accepted);
  const double ev_without = static_cast<double>(without.accepted);
  const double engine_eval_s = with.engine.engine_s - with.engine_sql_s;
  json incremental{
      {"with_engine", IncrementalJson(with, true)},
      {"without_engine", IncrementalJson(without, false)},
      {"engine_cost_by_subtraction_us_per_event",
       Round((with.apply_s / ev_with - without.apply_s / ev_without) * 1e6)},
      {"engine_cost_measured_us_per_event", Round(with.engine.engine_s / ev_with * 1e6)},
      {"sqlite_and_applier_us_per_event",
       Round((with.wall_s - with.engine.engine_s - with.run_due_s) / ev_with * 1e6)},
      {"engine_share_of_end_to_end",
       Round((with.engine.engine_s + with.run_due_s) / with.wall_s, 3)},
      {"end_to_end_with_vs_without_engine",
       Round((ev_with / with.wall_s) / (ev_without / without.wall_s), 3)},
      {"note",
       "single-threaded: the writes run on the store's one writer thread while the caller "
       "waits; each of the `writes` holds `messages_per_write` messages and commits alone "
       "(synchronous=FULL). events_per_s: accepted events / wall time of the writes and due "
       "timers (building and parsing the batches excluded); the engine's own figures are in "
       "with_engine.engine; without_engine: the same number of other messages with no engine "
       "(an Applier alone); breakdown_us_per_event.applier_sql includes, with the engine, "
       "reading back the contact of each identify to hand to Engine::OnContactChanged"}};

  sqlite3_close(sdb);
  engine->Stop();
  engine.reset();
  cache.reset();
  st->Close();

  // ---- summary ----
  const double engine_eps = ev_with / engine_eval_s;
  json goals{
      {"rebuild_s", {{"value", Round(rebuild_s)}, {"target", "<= 2"}, {"met", rebuild_s <= 2}}},
      {"incremental_events_per_s_per_core",
       {{"value", Round(engine_eps)},
        {"what", "segment evaluation only (with_engine.engine.events_per_s_per_core)"},
        {"target", ">= 200000"},
        {"met", engine_eps >= 200000}}},
      {"speedup_vs_sql",
       {{"value", Round(worst_speedup)},
        {"what", "the smallest sql_s / engine_s over the SQL-checked segments (nudge's schema)"},
        {"target", ">= 50"},
        {"met", worst_speedup >= 50}}}};
  const bool ok = problems.empty();
  json setup_out = setup;
  setup_out.erase("loadavg_start");
  json out{{"benchmark", "segments"},
           {"ok", ok},
           {"problems", problems},
           {"machine",
            {{"cores", sysconf(_SC_NPROCESSORS_ONLN)},
             {"loadavg_start", setup.value("loadavg_start", "")},
             {"loadavg_end", LoadAvg()},
             {"data_fs", FsType(dir)},
             {"sqlite_version", sqlite3_libversion()}}},
           {"params",
            {{"contacts", n},
             {"segments", kSegmentCount},
             {"events_per_contact", "5-20 over the last 60 days (12% of contacts: last 14 days)"},
             {"traits_per_contact", "11-12"},
             {"incremental_messages", args.events},
             {"messages_per_write", args.batch},
             {"rebuild_runs", args.rebuilds},
             {"sql_runs", args.sql_runs},
             {"seed", args.seed},
             {"now", core::FormatIso8601(t0)}}},
           {"setup", setup_out},
           {"load", load},
           {"memory", memory},
           {"rebuild", rebuild},
           {"segments", segments},
           {"sql", sql},
           {"sql_indexed", indexed},
           {"background", background},
           {"incremental", incremental},
           {"goals", goals}};
  std::printf("%s\n", out.dump(1).c_str());
  std::fflush(stdout);
  return ok ? 0 : 1;
}

bool ParseArgs(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto num = [&](auto& v) {
      const char* s = next();
      if (!s) return false;
      char* end = nullptr;
      const long long x = std::strtoll(s, &end, 10);
      if (*end || x <= 0) return false;
      v = static_cast<std::remove_reference_t<decltype(v)>>(x);
      return true;
    };
    bool ok = true;
    if (k == "--contacts")
      ok = num(a.contacts);
    else if (k == "--events")
      ok = num(a.events);
    else if (k == "--batch")
      ok = num(a.batch);
    else if (k == "--rebuilds")
      ok = num(a.rebuilds);
    else if (k == "--sql-runs")
      ok = num(a.sql_runs);
    else if (k == "--seed")
      ok = num(a.seed);
    else if (k == "--keep")
      a.keep = true;
    else if (k == "--tmpdir") {
      const char* s = next();
      ok = s != nullptr;
      if (s) a.tmpdir = s;
    } else
      ok = false;
    if (!ok) return false;
  }
  return a.contacts < (int64_t{1} << 31) && a.rebuilds <= 100 && a.sql_runs <= 100;
}

}  // namespace
}  // namespace nudge::bench

int main(int argc, char** argv) {
  using namespace nudge::bench;
  // The engine measured with the heap nudge serve gives it.
  nudge::core::ReexecWithHugePages(argv);
  Args args;
  if (!ParseArgs(argc, argv, args)) {
    std::fprintf(stderr,
                 "usage: segments_bench [--contacts N] [--events N] [--batch N] [--rebuilds N] "
                 "[--sql-runs N] [--tmpdir DIR] [--keep] [--seed N]\n");
    return 2;
  }
  {
    auto sink_err = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto sink_mem = std::make_shared<spdlog::sinks::ostream_sink_mt>(g_log);
    auto logger =
        std::make_shared<spdlog::logger>("nudge", spdlog::sinks_init_list{sink_err, sink_mem});
    spdlog::set_default_logger(logger);
  }
  std::string tmpl = args.tmpdir + "/nudge-bench-segments.XXXXXX";
  if (!mkdtemp(tmpl.data())) Die("mkdtemp in " + args.tmpdir + ": " + std::strerror(errno));
  const std::string dir = tmpl;
  g_dir = dir;
  g_keep = args.keep;
  g_parent = getpid();
  const std::string db = dir + "/nudge.db";
  const std::string setup_file = dir + "/setup.json";
  const std::string load_start = LoadAvg();
  Log("contacts %lld, data in %s", static_cast<long long>(args.contacts), dir.c_str());

  // The setup runs in a child process so that the measured process starts with none of its
  // memory (nothing is threaded before the fork).
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    const json setup = Setup(args, db);
    std::ofstream(setup_file) << setup.dump();
    std::fflush(stderr);
    std::_Exit(0);
  }
  int wstatus = 0;
  if (waitpid(pid, &wstatus, 0) != pid || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    if (!args.keep) std::filesystem::remove_all(dir);
    const std::string why = WIFSIGNALED(wstatus)
                                ? "killed by signal " + std::to_string(WTERMSIG(wstatus))
                                : "exit status " + std::to_string(WEXITSTATUS(wstatus));
    std::fprintf(stderr, "segments_bench: the setup process failed (%s)\n", why.c_str());
    // The child printed the error JSON when it could; a crash prints nothing.
    if (WIFSIGNALED(wstatus)) {
      json out{{"benchmark", "segments"}, {"ok", false}, {"error", "setup process " + why}};
      std::printf("%s\n", out.dump().c_str());
    }
    return 1;
  }
  json setup;
  {
    std::ifstream in(setup_file);
    setup = json::parse(in, nullptr, false);
    if (setup.is_discarded()) Die("no setup results");
  }
  setup["db_bytes"] = DirBytes(dir);
  setup["loadavg_start"] = load_start;  // reported under "machine"
  const int rc = Measure(args, dir, db, setup);
  if (args.keep)
    Log("kept %s", dir.c_str());
  else
    std::filesystem::remove_all(dir);
  return rc;
}
