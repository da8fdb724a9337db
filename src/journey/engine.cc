#include "journey/engine.h"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "core/crypto.h"
#include "core/json.h"
#include "core/time.h"
#include "profile/applier.h"
#include "profile/traits.h"

namespace nudge::journey {

using nlohmann::json;
using store::ContactId;
using store::WorkspaceId;

namespace {

constexpr const char* kActive = "active";

struct JourneyState {
  WorkspaceId ws = 0;
  std::string id;
  int64_t current = 0;
  std::string status = kActive;
  Millis updated_at = 0;
  std::map<int64_t, std::shared_ptr<const Journey>> versions;
  std::map<int64_t, std::string> sources;
  const Journey& def() const { return *versions.at(current); }
};

enum class Wait : uint8_t { kNone, kTimer, kEvent, kCondition, kQuiet };

// What the engine keeps in memory of an active instance; the row holds the rest. Kept small:
// a million waiting contacts are a million of these (docs/journeys.md, memory).
struct Active {
  int64_t id = 0;
  ContactId contact = 0;
  Millis wake = 0;                   // 0 = no timer
  const JourneyState* js = nullptr;  // journeys are erased only by a reload, which clears these
  int32_t version = 0;
  uint16_t step = 0;
  Wait wait = Wait::kNone;
};
static_assert(sizeof(Active) <= 40, "an active instance stays within one 64-byte heap chunk");

// The active instances by contact (events and trait changes look them up by contact; timers
// and runs know both). One node per instance, nothing else per instance.
class ActiveSet {
 public:
  Active* Find(ContactId contact, int64_t id) {
    auto [b, e] = map_.equal_range(contact);
    for (auto it = b; it != e; ++it)
      if (it->second.id == id) return &it->second;
    return nullptr;
  }
  Active& Add(const Active& a) { return map_.emplace(a.contact, a)->second; }
  void Erase(ContactId contact, int64_t id) {
    auto [b, e] = map_.equal_range(contact);
    for (auto it = b; it != e; ++it)
      if (it->second.id == id) {
        map_.erase(it);
        return;
      }
  }
  // Copies of the contact's instances, in one pass.
  std::vector<Active> Of(ContactId contact) const {
    std::vector<Active> out;
    auto [b, e] = map_.equal_range(contact);
    for (auto it = b; it != e; ++it) out.push_back(it->second);
    return out;
  }
  // How many of the contact's instances are of `js` (nothing copied: asked on every entry).
  int CountOf(ContactId contact, const JourneyState* js) const {
    int n = 0;
    auto [b, e] = map_.equal_range(contact);
    for (auto it = b; it != e; ++it) n += it->second.js == js ? 1 : 0;
    return n;
  }
  std::vector<int64_t> IdsOf(ContactId contact) const {
    std::vector<int64_t> ids;
    auto [b, e] = map_.equal_range(contact);
    for (auto it = b; it != e; ++it) ids.push_back(it->second.id);
    return ids;
  }
  // The instances of `from` now belong to `into` (a merge): the nodes move, nothing is copied.
  void Move(ContactId from, ContactId into) {
    while (true) {
      auto it = map_.find(from);
      if (it == map_.end()) return;
      auto node = map_.extract(it);
      node.key() = into;
      node.mapped().contact = into;
      map_.insert(std::move(node));
    }
  }
  size_t size() const { return map_.size(); }
  template <typename F>
  void ForEach(F f) {
    for (auto& [contact, a] : map_) f(a);
  }

 private:
  std::unordered_multimap<ContactId, Active> map_;
};

// A timer of an instance: when, and which instance of which contact.
struct InstanceTimer {
  Millis at;
  ContactId contact;
  int64_t id;
  bool operator>(const InstanceTimer& o) const { return at > o.at; }
};

struct DateTimer {
  Millis at;
  ContactId contact;
  WorkspaceId ws;
  std::string journey;
  bool operator>(const DateTimer& o) const { return at > o.at; }
};

struct Emit {
  ContactId contact;
  std::string name;
  std::string properties;  // a JSON object's text
  std::string key;
};

// A derived event's properties: a flat JSON object written by hand, the keys in the order
// given (callers give them sorted, as a JSON document prints them). Derived events are most of
// what a timer's fire writes; building and printing a document for each cost more than the rest
// of its engine work.
class Props {
 public:
  Props& Str(std::string_view key, std::string_view value) {
    Key(key);
    if (core::IsValidUtf8(value)) {
      core::AppendJsonString(out_, value);
    } else {
      out_ += json(std::string(value)).dump(-1, ' ', false, json::error_handler_t::replace);
    }
    return *this;
  }
  Props& Int(std::string_view key, int64_t value) {
    Key(key);
    out_ += std::to_string(value);
    return *this;
  }
  Props& Bool(std::string_view key, bool value) {
    Key(key);
    out_ += value ? "true" : "false";
    return *this;
  }
  Props& Number(std::string_view key, double value) {
    Key(key);
    out_ += json(value).dump();
    return *this;
  }
  std::string Text() {  // once, at the end
    out_ += '}';
    return std::move(out_);
  }

 private:
  void Key(std::string_view key) {
    if (out_.size() > 1) out_ += ',';
    core::AppendJsonString(out_, key);
    out_ += ':';
  }
  std::string out_ = "{";
};

std::string ExcerptBody(const std::string& body) {
  // A trigger that is not a stored event rides along in the instance (branches read it); a
  // very large one is cut to the fields that name it.
  if (body.size() <= 16 * 1024) return body;
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return "{}";
  json out = json::object();
  for (const char* k : {"type", "event", "messageId", "timestamp", "userId", "anonymousId"})
    if (j.contains(k)) out[k] = j[k];
  return out.dump();
}

// An instance's data column: the few fields (visit, deadline, deferred, variants,
// trigger_event_id) parsed, and the trigger event's body as text when the instance carries it
// (a trigger that is not a stored event, and instances written before stored triggers were
// read back by id); only branch conditions read it, as text, so it is neither parsed nor
// printed again when a timer's fire reads and writes the instance.
struct Data {
  json fields = json::object();
  std::string trigger;  // JSON text of the trigger event; empty when there is none
};

// Data that does not parse (nudge writes all of it) reads as empty.
Data ParseData(const std::string& text) {
  namespace od = simdjson::ondemand;
  thread_local od::parser parser;
  const simdjson::padded_string padded(text);
  od::document doc;
  od::object object;
  if (parser.iterate(padded).get(doc) || doc.get_object().get(object)) return Data{};
  Data d;
  for (auto field : object) {
    std::string_view key_view, raw;
    od::value value;
    od::json_type type;
    if (field.unescaped_key().get(key_view)) return Data{};
    const std::string key(key_view);
    if (field.value().get(value) || value.type().get(type)) return Data{};
    if (type == od::json_type::object) {
      od::object o;
      if (value.get_object().get(o) || o.raw_json().get(raw)) return Data{};
    } else if (type == od::json_type::array) {
      od::array a;
      if (value.get_array().get(a) || a.raw_json().get(raw)) return Data{};
    } else {
      raw = value.raw_json_token();
    }
    if (key == "trigger") {
      if (type == od::json_type::object) d.trigger.assign(raw);
      continue;
    }
    json v = json::parse(raw, nullptr, false);
    if (v.is_discarded()) return Data{};
    d.fields[key] = std::move(v);
  }
  return d;
}

std::string DumpData(const Data& d) {
  const std::string fields = d.fields.dump();
  if (d.trigger.empty()) return fields;
  std::string out = "{\"trigger\":";
  out += d.trigger;
  if (fields.size() > 2) {
    out += ',';
    out.append(fields, 1);
  } else {
    out += '}';
  }
  return out;
}

uint64_t Hash64(std::string_view s) {
  const std::string h = core::Sha256Hex(s);
  return std::stoull(h.substr(0, 15), nullptr, 16);
}

}  // namespace

struct Engine::Impl {
  Impl(store::Store& store, segment::Engine& segments, profile::ContactCache& cache,
       const core::Clock& clock, core::MetricsRegistry* metrics, EngineOptions options)
      : store(store), segments(segments), cache(cache), clock(clock), options(options) {
    if (metrics) {
      entered =
          &metrics->GetCounter("nudge_journey_entries_total", "Contacts who entered a journey.");
      entries_capped = &metrics->GetCounter(
          "nudge_journey_entries_capped_total",
          "Entries skipped because the contact already ran the journey max_active times at once.");
      steps_run = &metrics->GetCounter("nudge_journey_steps_total", "Journey steps taken.");
      messages =
          &metrics->GetCounter("nudge_outbox_messages_total", "Messages written to the outbox.");
      // Delivery's counter: a message capped here is one delivery did not send either.
      suppressed = &metrics->GetCounter("nudge_messages_suppressed_total",
                                        "Messages not sent: suppressed or not subscribed.");
      reload_metric = &metrics->GetCounter(
          "nudge_engine_reloads_total",
          "Times an engine rebuilt its memory from the store after a write rolled back.",
          "{engine=\"journeys\"}");
      lateness = &metrics->GetHistogram("nudge_journey_timer_lateness_seconds",
                                        "How late journey timers fire.",
                                        {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 60, 3600});
      metrics->AddGauge("nudge_queue_depth", "Work waiting in a queue.",
                        "{queue=\"journey_timers\"}", [this] {
                          std::lock_guard lock(timer_mutex);
                          return static_cast<double>(timers.size());
                        });
    }
  }

  store::Store& store;
  segment::Engine& segments;
  profile::ContactCache& cache;
  const core::Clock& clock;
  EngineOptions options;
  core::Counter* entered = nullptr;
  core::Counter* entries_capped = nullptr;
  core::Counter* steps_run = nullptr;
  core::Counter* messages = nullptr;
  core::Counter* suppressed = nullptr;
  core::Counter* reload_metric = nullptr;
  std::atomic<uint64_t> reloads{0};
  // Told (after the commit) that the outbox has new queued messages: the delivery pipeline.
  std::function<void()> on_outbox;
  void Queued(store::WriteTxn& txn) {
    if (on_outbox) txn.OnCommit(on_outbox);
  }
  core::Histogram* lateness = nullptr;

  mutable std::recursive_mutex mu;  // the state below; observer callbacks re-enter
  std::map<std::pair<WorkspaceId, std::string>, JourneyState> journeys;
  std::map<WorkspaceId, Policies> policies;
  ActiveSet active;
  std::map<std::pair<ContactId, std::string>, Millis> date_scheduled;  // (contact, journey)
  std::vector<Emit> emits;

  mutable std::mutex timer_mutex;
  std::condition_variable timer_cv;
  std::priority_queue<InstanceTimer, std::vector<InstanceTimer>, std::greater<>>
      timers;  // GUARDED_BY(timer_mutex)
  std::priority_queue<DateTimer, std::vector<DateTimer>, std::greater<>> date_timers;  // ditto
  bool stopping = false;
  std::thread timer_thread;

  // ---- helpers ----

  JourneyState* Find(WorkspaceId ws, const std::string& id) {
    auto it = journeys.find({ws, id});
    return it == journeys.end() ? nullptr : &it->second;
  }

  const Policies& PoliciesOf(WorkspaceId ws) {
    static const Policies kDefault;
    auto it = policies.find(ws);
    return it == policies.end() ? kDefault : it->second;
  }

  std::string TimeZoneOf(WorkspaceId ws, ContactId contact) {
    std::string zone;
    if (const std::string* traits = segments.TraitsLocked(contact)) {
      json t = json::parse(*traits, nullptr, false);
      if (t.is_object() && t.contains("timezone") && t["timezone"].is_string())
        zone = t["timezone"].get<std::string>();
    }
    return ChooseTimeZone(zone, PoliciesOf(ws).timezone);
  }

  void Schedule(Active& a, Millis wake) {
    a.wake = wake;
    if (!wake) return;
    std::lock_guard lock(timer_mutex);
    const bool earlier = timers.empty() || wake < timers.top().at;
    timers.push({wake, a.contact, a.id});
    if (earlier) timer_cv.notify_all();
  }

  void Forget(ContactId contact, int64_t id) { active.Erase(contact, id); }

  void Queue(ContactId contact, std::string name, std::string properties, std::string key) {
    emits.push_back({contact, std::move(name), std::move(properties), std::move(key)});
  }

  // Stores the journey events queued while handling a change, each processed in turn.
  Status FlushEmits(store::WriteTxn& txn) {
    for (int round = 0; round < 8 && !emits.empty(); ++round) {
      std::vector<Emit> batch = std::exchange(emits, {});
      for (Emit& e : batch)
        NUDGE_TRY(segments.EmitLocked(txn, e.contact, e.name, e.properties, e.key));
    }
    return Status::Ok();
  }

  static std::string Key(const store::Instance& inst, const std::string& step, int64_t visit) {
    return std::to_string(inst.id) + ":" + step + ":" + std::to_string(visit);
  }

  // ---- running instances ----

  // `finished_step`: the step a completed instance finished (its step is already cleared and
  // logged), for the Journey Exited event.
  Status End(store::WriteTxn& txn, store::Instance& inst, const std::string& status,
             const std::string& reason, const std::string& step_outcome, Millis now,
             const std::string& finished_step = {}) {
    if (!inst.step.empty()) NUDGE_TRY(txn.LogStep(inst, inst.step, step_outcome, now));
    // A message held back for quiet hours would otherwise wait for an instance that is gone.
    if (const json data = ParseData(inst.data).fields;
        data.contains("deferred") && data["deferred"].is_number_integer()) {
      NUDGE_TRY(txn.UpdateMessageStatusIf(
          data["deferred"].get<int64_t>(), "deferred_quiet_hours", "cancelled", now,
          "the journey ended (" + reason + ") before quiet hours were over"));
    }
    const std::string last_step = inst.step.empty() ? finished_step : inst.step;
    inst.status = status;
    inst.step.clear();
    inst.wake_at.reset();
    inst.updated_at = now;
    NUDGE_TRY(txn.UpdateInstance(inst));
    Forget(inst.contact, inst.id);
    Queue(inst.contact, "Journey Exited",
          Props()
              .Bool("converted", status == "converted")
              .Int("instance", inst.id)
              .Str("journey", inst.journey)
              .Str("reason", reason)
              .Str("step", last_step)
              .Int("version", inst.version)
              .Text(),
          "exit:" + std::to_string(inst.id));
    return Status::Ok();
  }

  // Walks the journey from step `at` (nullopt: the journey is done) until a step waits or the
  // journey ends. `resume` means the instance is already at `at` and comes back to it (a quiet
  // hours deferral ending). `late_by`: how late the timer that woke it fired. `now`: the time
  // the caller has already stamped on the instance and its step log (entry, a match, a
  // timeout), so that a wait's deadline counts from it even when the clock has ticked over a
  // millisecond since.
  Status Run(store::WriteTxn& txn, store::Instance& inst, const Journey& j,
             std::optional<size_t> at, Data& data, Millis late_by, bool resume, Millis now) {
    Active* a = active.Find(inst.contact, inst.id);
    for (int guard = 0; guard < 256; ++guard) {
      if (!at) {
        if (!inst.step.empty()) NUDGE_TRY(txn.LogStep(inst, inst.step, "completed", now));
        const std::string finished = std::exchange(inst.step, {});
        inst.data = DumpData(data);
        return End(txn, inst, "completed", "completed", "completed", now, finished);
      }
      const Step& step = j.steps[*at];
      if (!resume || inst.step != step.id) {
        if (!inst.step.empty() && inst.step != step.id) {
          NUDGE_TRY(txn.LogStep(inst, inst.step, "completed", now));
          Queue(inst.contact, "Journey Step Completed",
                Props()
                    .Int("instance", inst.id)
                    .Str("journey", inst.journey)
                    .Str("step", inst.step)
                    .Int("version", inst.version)
                    .Text(),
                "step:" + std::to_string(inst.id) + ":" + inst.step + ":" +
                    std::to_string(data.fields.value("visit", 0)));
        }
        data.fields["visit"] = data.fields.value("visit", 0) + 1;
        inst.step = step.id;
        inst.step_since = now;
        NUDGE_TRY(txn.LogStep(inst, step.id, "entered", now));
      }
      resume = false;
      if (steps_run) steps_run->Add();
      if (a) {
        a->step = static_cast<uint16_t>(*at);
        a->wait = Wait::kNone;
        a->wake = 0;
      }
      inst.wake_at.reset();
      const int64_t visit = data.fields.value("visit", 0);
      std::optional<size_t> next = j.Resolve(*at, step.next);

      switch (step.kind) {
        case StepKind::kSend: {
          store::Message m;
          m.workspace = inst.workspace;
          m.contact = inst.contact;
          m.journey = inst.journey;
          m.version = inst.version;
          m.step = step.id;
          m.instance = inst.id;
          m.channel = step.channel;
          m.template_id = step.template_id;
          m.idempotency_key = Key(inst, step.id, visit);
          m.created_at = m.send_at = m.updated_at = now;
          m.payload = json{{"trigger_event_id", data.fields.value("trigger_event_id", 0)}}.dump();
          const Policies& pol = PoliciesOf(inst.workspace);
          // Quiet hours and caps hold back marketing, not the receipt a contact is waiting for.
          const bool transactional =
              options.transactional && options.transactional(inst.workspace, step.template_id);
          if (data.fields.contains("deferred")) {
            // Quiet hours are over: the deferred message goes out now.
            // Unless delivery already took it when its send_at came.
            NUDGE_ASSIGN_OR_RETURN(bool released, txn.UpdateMessageStatusIf(
                                                      data.fields["deferred"].get<int64_t>(),
                                                      "deferred_quiet_hours", "queued", now, ""));
            if (released) Queued(txn);
            data.fields.erase("deferred");
            NUDGE_TRY(txn.LogStep(inst, step.id, "sent", now));
          } else if (late_by > j.max_lateness) {
            m.status = "skipped_late";
            m.detail =
                "the step came " + std::to_string(late_by / 1000) + " s late, past max_lateness";
            NUDGE_TRY(txn.InsertMessage(m));
            NUDGE_TRY(txn.LogStep(inst, step.id, "skipped", now));
          } else if (auto q = pol.quiet_hours.find(step.channel);
                     !transactional && q != pol.quiet_hours.end() &&
                     QuietUntil(now, TimeZoneOf(inst.workspace, inst.contact), q->second)) {
            const Millis until =
                *QuietUntil(now, TimeZoneOf(inst.workspace, inst.contact), q->second);
            m.status = "deferred_quiet_hours";
            m.send_at = until;
            m.detail = "quiet hours in " + TimeZoneOf(inst.workspace, inst.contact);
            NUDGE_ASSIGN_OR_RETURN(bool inserted, txn.InsertMessage(m));
            if (inserted && messages) messages->Add();
            data.fields["deferred"] = m.id;
            inst.wake_at = until;
            if (a) {
              a->wait = Wait::kQuiet;
              Schedule(*a, until);
            }
            return Save(txn, inst, data);
          } else {
            bool capped = false;
            if (auto c = pol.caps.find(step.channel); !transactional && c != pol.caps.end()) {
              NUDGE_ASSIGN_OR_RETURN(
                  int64_t recent,
                  txn.CountRecentMessages(inst.contact, step.channel, now - c->second.per));
              if (recent >= c->second.max) {
                capped = true;
                m.status = "capped";
                m.detail =
                    std::to_string(recent) + " " + step.channel + " messages in the cap's period";
              }
            }
            if (!capped) m.status = "queued";
            NUDGE_ASSIGN_OR_RETURN(bool inserted, txn.InsertMessage(m));
            if (inserted && messages && !capped) messages->Add();
            if (inserted && suppressed && capped) suppressed->Add();
            if (inserted && !capped) Queued(txn);
            NUDGE_TRY(txn.LogStep(inst, step.id, capped ? "skipped" : "sent", now));
          }
          at = next;
          break;
        }
        case StepKind::kWebhook: {
          store::Message m;
          m.workspace = inst.workspace;
          m.contact = inst.contact;
          m.journey = inst.journey;
          m.version = inst.version;
          m.step = step.id;
          m.instance = inst.id;
          m.channel = "webhook";
          m.idempotency_key = Key(inst, step.id, visit);
          m.created_at = m.send_at = m.updated_at = now;
          json headers = json::object();
          for (const auto& [k, v] : step.headers) headers[k] = v;
          m.payload = json{{"url", step.url},
                           {"method", step.method},
                           {"body", step.body},
                           {"headers", headers},
                           {"trigger_event_id", data.fields.value("trigger_event_id", 0)}}
                          .dump();
          m.status = late_by > j.max_lateness ? "skipped_late" : "queued";
          NUDGE_ASSIGN_OR_RETURN(bool inserted, txn.InsertMessage(m));
          if (inserted && messages) messages->Add();
          if (inserted && m.status == "queued") Queued(txn);
          at = next;
          break;
        }
        case StepKind::kWait: {
          Millis wake = 0;
          switch (step.wait.kind) {
            case WaitSpec::Kind::kDuration:
              wake = now + step.wait.duration;
              break;
            case WaitSpec::Kind::kTimeOfDay:
              wake = NextLocalTime(now, TimeZoneOf(inst.workspace, inst.contact),
                                   step.wait.minute_of_day, step.wait.weekdays);
              break;
            case WaitSpec::Kind::kDate: {
              auto d = TraitTime(inst.contact, step.wait.trait);
              wake = d ? *d + step.wait.offset : 0;
              break;
            }
          }
          if (wake <= now) {  // already past (a date before now, a trait missing): go on
            at = next;
            break;
          }
          inst.wake_at = wake;
          if (a) {
            a->wait = Wait::kTimer;
            Schedule(*a, wake);
          }
          return Save(txn, inst, data);
        }
        case StepKind::kWaitFor: {
          const Millis deadline = now + step.timeout;
          data.fields["deadline"] = deadline;
          if (step.wait_condition) {
            if (segments.MatchesLocked(*step.wait_condition, inst.contact, nullptr, false)) {
              data.fields.erase("deadline");
              NUDGE_TRY(txn.LogStep(inst, step.id, "matched", now));
              at = j.Resolve(*at, step.on_event.empty() ? step.next : step.on_event);
              break;
            }
            Millis wake = deadline;
            if (auto change = segments.NextChangeLocked(*step.wait_condition, inst.contact);
                change && *change < wake)
              wake = *change;
            inst.wake_at = wake;
            if (a) {
              a->wait = Wait::kCondition;
              Schedule(*a, wake);
            }
          } else {
            inst.wake_at = deadline;
            if (a) {
              a->wait = Wait::kEvent;
              Schedule(*a, deadline);
            }
          }
          return Save(txn, inst, data);
        }
        case StepKind::kBranch: {
          std::optional<store::Event> trigger;
          const std::string* body = data.trigger.empty() ? nullptr : &data.trigger;
          if (const int64_t id = data.fields.value("trigger_event_id", int64_t{0});
              !body && id > 0) {
            NUDGE_ASSIGN_OR_RETURN(trigger, txn.GetEvent(id));
            if (trigger) body = &trigger->body;
          }
          std::string target = step.else_next;
          for (const auto& c : step.cases) {
            if (segments.MatchesLocked(*c.when, inst.contact, body, false)) {
              target = c.next;
              break;
            }
          }
          at = j.Resolve(*at, target);
          break;
        }
        case StepKind::kSplit: {
          double total = 0;
          for (const auto& v : step.variants) total += v.weight;
          const uint64_t h =
              Hash64(inst.journey + "/" + step.id + "/" + std::to_string(inst.contact));
          const double point = static_cast<double>(h % 1000000) / 1e6 * total;
          const Variant* chosen = &step.variants.back();
          double acc = 0;
          for (const auto& v : step.variants) {
            acc += v.weight;
            if (point < acc) {
              chosen = &v;
              break;
            }
          }
          data.fields["variants"][step.id] = chosen->name;
          Queue(inst.contact, "Experiment Viewed",
                Props()
                    .Str("experiment", step.experiment.empty() ? step.id : step.experiment)
                    .Int("instance", inst.id)
                    .Str("journey", inst.journey)
                    .Str("step", step.id)
                    .Str("variant", chosen->name)
                    .Text(),
                "split:" + std::to_string(inst.id) + ":" + step.id + ":" + std::to_string(visit));
          at = j.Resolve(*at, chosen->next);
          break;
        }
        case StepKind::kUpdate: {
          NUDGE_TRY(Update(txn, inst, step));
          at = next;
          break;
        }
        case StepKind::kExit:
          NUDGE_TRY(txn.LogStep(inst, step.id, "completed", now));
          inst.step.clear();
          inst.data = DumpData(data);
          return End(txn, inst, "exited", "exit step", "exited", now);
      }
    }
    return Status::Internal("journey " + inst.journey + " ran 256 steps without waiting");
  }

  Status Save(store::WriteTxn& txn, store::Instance& inst, const Data& data) {
    inst.data = DumpData(data);
    inst.updated_at = clock.NowMillis();
    return txn.UpdateInstance(inst);
  }

  std::optional<Millis> TraitTime(ContactId contact, const std::vector<std::string>& path) {
    const std::string* traits = segments.TraitsLocked(contact);
    if (!traits) return std::nullopt;
    json t = json::parse(*traits, nullptr, false);
    const json* cur = &t;
    for (const auto& p : path) {
      if (!cur->is_object() || !cur->contains(p)) return std::nullopt;
      cur = &(*cur)[p];
    }
    if (cur->is_string()) {
      auto ms = core::TryParseIso8601(cur->get<std::string>());
      if (ms) return *ms;
    }
    if (cur->is_number()) return static_cast<Millis>(cur->get<double>());  // epoch ms
    return std::nullopt;
  }

  Status Update(store::WriteTxn& txn, const store::Instance& inst, const Step& step) {
    NUDGE_ASSIGN_OR_RETURN(auto contact, txn.GetContact(inst.contact));
    if (!contact) return Status::Ok();
    json patch = json::parse(step.set_json, nullptr, false);
    if (!patch.is_object()) patch = json::object();
    for (const auto& k : step.unset) patch[k] = nullptr;
    bool changed = false;
    if (!patch.empty()) {
      NUDGE_ASSIGN_OR_RETURN(std::string merged,
                             profile::MergeTraits(contact->traits, patch.dump()));
      changed = merged != contact->traits;
      contact->traits = std::move(merged);
    }
    if (!step.add_tags.empty() || !step.remove_tags.empty()) {
      json tags = json::parse(contact->tags, nullptr, false);
      if (!tags.is_array()) tags = json::array();
      for (const auto& t : step.add_tags)
        if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
      for (const auto& t : step.remove_tags)
        tags.erase(std::remove(tags.begin(), tags.end(), json(t)), tags.end());
      if (tags.dump() != contact->tags) {
        contact->tags = tags.dump();
        changed = true;
      }
    }
    if (changed) {
      profile::DeriveContactFields(*contact, profile::ProfileOptions{});
      NUDGE_TRY(txn.UpdateContact(*contact));
      NUDGE_TRY(segments.ContactChangedLocked(txn, *contact));
    }
    if (step.score != 0)
      Queue(inst.contact, "Score Adjusted",
            Props()
                .Str("journey", inst.journey)
                .Number("points", step.score)
                .Str("step", step.id)
                .Text(),
            "score:" + std::to_string(inst.id) + ":" + step.id);
    return Status::Ok();
  }

  // ---- entering ----

  // Starts `js` for the contact if its rules allow. trigger_body: the stored event's JSON.
  Status TryEnter(store::WriteTxn& txn, JourneyState& js, ContactId contact,
                  const std::string* trigger_body, int64_t trigger_event_id,
                  const std::string& trigger_key, int64_t* entered_id = nullptr) {
    if (js.status != kActive) return Status::Ok();
    const Journey& j = js.def();
    if (!j.test_group.empty() && !segments.InSegmentLocked(js.ws, j.test_group, contact))
      return Status::Ok();
    if (j.audience && !segments.MatchesLocked(*j.audience, contact, trigger_body, false))
      return Status::Ok();
    const Millis now = clock.NowMillis();
    NUDGE_ASSIGN_OR_RETURN(
        auto past, txn.EntryPastOf(contact, js.id, trigger_key, j.entry == EntryRule::kOncePer));
    if (past.same_trigger) return Status::Ok();  // this very trigger, again
    // The running ones are in memory: the history on disk is read from its index only.
    const int running = active.CountOf(contact, &js);
    switch (j.entry) {
      case EntryRule::kOnce:
        if (past.any) return Status::Ok();
        break;
      case EntryRule::kOncePer:
        if (running > 0 || (past.any && past.last_entered_at > now - j.entry_period))
          return Status::Ok();
        break;
      case EntryRule::kEveryTime:
        break;
    }
    if (running >= j.max_active) {
      if (entries_capped) entries_capped->Add();
      spdlog::debug("journey {}: contact {} already runs it {} times (max_active), not entered",
                    js.id, contact, running);
      return Status::Ok();
    }
    store::Instance inst;
    inst.workspace = js.ws;
    inst.journey = js.id;
    inst.version = js.current;
    inst.contact = contact;
    inst.status = kActive;
    inst.entered_at = inst.updated_at = inst.step_since = now;
    inst.trigger_key = trigger_key;
    Data data;
    // A stored trigger event is read back by its id when a branch needs it; only a trigger that
    // is not stored rides along in the instance, and that is always JSON nudge wrote (a date
    // reached, a trait changed, an API call).
    if (trigger_body && trigger_event_id <= 0) data.trigger = ExcerptBody(*trigger_body);
    data.fields["trigger_event_id"] = trigger_event_id;
    inst.data = DumpData(data);
    NUDGE_ASSIGN_OR_RETURN(inst.id, txn.InsertInstance(inst));
    if (entered) entered->Add();
    Active a;
    a.id = inst.id;
    a.contact = contact;
    a.js = &js;
    a.version = static_cast<int32_t>(js.current);
    active.Add(a);
    if (entered_id) *entered_id = inst.id;
    Queue(contact, "Journey Entered",
          Props().Int("instance", inst.id).Str("journey", js.id).Int("version", js.current).Text(),
          "enter:" + std::to_string(inst.id));
    return Run(txn, inst, j, std::optional<size_t>(0), data, 0, false, now);
  }

  // ---- events ----

  static std::string Prop(const json& body, const char* key) {
    if (!body.is_object() || !body.contains("properties")) return "";
    const json& p = body["properties"];
    return p.is_object() && p.contains(key) && p[key].is_string() ? p[key].get<std::string>() : "";
  }

  // `body` gives the event's body parsed (only the segment and stage triggers read it).
  bool Triggers(const journey::Trigger& t, const store::Event& e,
                const std::function<const json&()>& body, ContactId contact) {
    switch (t.kind) {
      case TriggerKind::kEvent:
        return e.name == t.event &&
               (!t.where || segments.MatchesLocked(*t.where, contact, &e.body, false));
      case TriggerKind::kSegmentEntered:
        return e.name == "Segment Entered" && Prop(body(), "segment") == t.segment;
      case TriggerKind::kSegmentExited:
        return e.name == "Segment Exited" && Prop(body(), "segment") == t.segment;
      case TriggerKind::kStageChanged:
        return e.name == "Stage Changed" && (t.stage.empty() || Prop(body(), "stage") == t.stage);
      default:
        return false;
    }
  }

  Status HandleEvent(store::WriteTxn& txn, const store::Event& e) {
    const ContactId contact = cache.Resolve(e.contact);
    // Instances already running: goals, then waits for this event or a condition.
    NUDGE_TRY(Recheck(txn, contact, &e));
    // Journeys this event starts. Only a segment or stage trigger reads the body of nudge's
    // own events (event triggers match through the condition engine), and it is parsed only
    // then: every new contact enters segments and a stage, most with no journey waiting.
    std::optional<json> parsed;
    const std::function<const json&()> body = [&]() -> const json& {
      if (!parsed) parsed = json::parse(e.body, nullptr, false);
      return *parsed;
    };
    for (auto& [key, js] : journeys) {
      if (js.ws != e.workspace || js.status != kActive) continue;
      if (!Triggers(js.def().trigger, e, body, contact)) continue;
      NUDGE_TRY(TryEnter(txn, js, contact, &e.body, e.id, "event:" + std::to_string(e.id)));
    }
    return Status::Ok();
  }

  // ---- traits ----

  static json TraitAt(const std::string& traits, const std::vector<std::string>& path) {
    json t = json::parse(traits, nullptr, false);
    const json* cur = &t;
    for (const auto& p : path) {
      if (!cur->is_object() || !cur->contains(p)) return nullptr;
      cur = &(*cur)[p];
    }
    return *cur;
  }

  void ScheduleDates(WorkspaceId ws, ContactId contact, const std::string& traits) {
    for (auto& [key, js] : journeys) {
      if (js.ws != ws || js.def().trigger.kind != TriggerKind::kDate) continue;
      const json v = TraitAt(traits, js.def().trigger.trait);
      std::optional<Millis> at;
      if (v.is_string()) {
        if (auto t = core::TryParseIso8601(v.get<std::string>())) at = *t + js.def().trigger.offset;
      }
      auto& slot = date_scheduled[{contact, js.id}];
      if (!at) {
        slot = 0;
        continue;
      }
      if (slot == *at) continue;
      slot = *at;
      std::lock_guard lock(timer_mutex);
      date_timers.push({*at, contact, ws, js.id});
      timer_cv.notify_all();
    }
  }

  Status HandleChange(store::WriteTxn& txn, const store::Contact& c, std::string_view previous) {
    const std::string old_traits = previous.empty() ? "{}" : std::string(previous);
    const Millis now = clock.NowMillis();
    // Trait triggers.
    for (auto& [key, js] : journeys) {
      if (js.ws != c.workspace || js.status != kActive) continue;
      const journey::Trigger& t = js.def().trigger;
      if (t.kind != TriggerKind::kTraitChanged) continue;
      const json was = TraitAt(old_traits, t.trait), is = TraitAt(c.traits, t.trait);
      if (was == is) continue;
      json change{{"type", "track"},
                  {"event", "Trait Changed"},
                  {"properties",
                   {{"trait", t.trait.empty() ? "" : t.trait.back()}, {"from", was}, {"to", is}}}};
      const std::string body = change.dump();
      NUDGE_TRY(TryEnter(
          txn, js, c.id, &body, 0,
          "trait:" + std::to_string(now) + ":" + core::Sha256Hex(is.dump()).substr(0, 12)));
    }
    ScheduleDates(c.workspace, c.id, c.traits);
    // Goals and condition waits of running instances read traits too.
    return RecheckContact(txn, c.id);
  }

  // Goals written on traits and waits for conditions, after a change to the contact.
  Status RecheckContact(store::WriteTxn& txn, ContactId contact) {
    return Recheck(txn, contact, nullptr);
  }

  // The contact's running instances after an event (`e`) or a change to the contact (null):
  // goals reached end them, waits ended (for this event, or for a condition) move them on. One
  // pass over them (a contact may have thousands, with entry: every_time), each condition
  // evaluated once. Once an instance has run, the others are looked up again and conditions
  // evaluated afresh: running may have ended instances or changed what the conditions read.
  Status Recheck(store::WriteTxn& txn, ContactId contact, const store::Event* e) {
    const std::vector<Active> snapshot = active.Of(contact);
    if (snapshot.empty()) return Status::Ok();
    const Millis now = clock.NowMillis();
    const std::string* body = e ? &e->body : nullptr;
    bool changed = false;
    std::unordered_map<const rules::Condition*, bool> memo;
    auto matches = [&](const rules::Condition& c, const std::string* with, bool goal) {
      if (changed) return segments.MatchesLocked(c, contact, with, goal);
      auto [it, fresh] = memo.try_emplace(&c, false);
      if (fresh) it->second = segments.MatchesLocked(c, contact, with, goal);
      return it->second;
    };
    for (const Active& seen : snapshot) {
      const int64_t id = seen.id;
      Active a = seen;
      if (changed) {
        const Active* found = active.Find(contact, id);
        if (!found) continue;
        a = *found;
      }
      const JourneyState* js = a.js;
      if (!js || js->status != kActive) continue;
      const Journey& j = *js->versions.at(a.version);
      if (j.exit_when && matches(*j.exit_when, body, true)) {
        changed = true;
        NUDGE_ASSIGN_OR_RETURN(auto inst, txn.GetInstance(id));
        if (inst) NUDGE_TRY(End(txn, *inst, "converted", "goal", "converted", now));
        continue;
      }
      const Step& step = j.steps[a.step];
      if (step.kind != StepKind::kWaitFor) continue;
      bool hit = false;
      if (a.wait == Wait::kEvent && e)
        hit = e->name == step.wait_event &&
              (!step.wait_where || matches(*step.wait_where, body, false));
      if (a.wait == Wait::kCondition) hit = matches(*step.wait_condition, nullptr, false);
      if (!hit) continue;
      changed = true;
      NUDGE_ASSIGN_OR_RETURN(auto inst, txn.GetInstance(id));
      if (!inst) continue;
      Data data = ParseData(inst->data);
      data.fields.erase("deadline");
      NUDGE_TRY(txn.LogStep(*inst, step.id, "matched", now));
      NUDGE_TRY(Run(txn, *inst, j,
                    j.Resolve(a.step, step.on_event.empty() ? step.next : step.on_event), data, 0,
                    false, now));
    }
    return Status::Ok();
  }

  // ---- loading, and reloading after a rollback ----

  // What the store holds of journeys: Load reads it at start, Reload after a rollback.
  struct Stored {
    std::vector<store::JourneyRecord> records;
    std::map<WorkspaceId, Policies> policies;
    std::vector<store::Instance> instances;
    // The definitions of every current version and of every version an instance is on;
    // only those not already in memory when `have` is given.
    std::map<std::tuple<WorkspaceId, std::string, int64_t>, std::string> bodies;
  };

  Status ReadStored(
      store::ReadTxn& t, Stored& out,
      const std::function<bool(WorkspaceId, const std::string&, int64_t)>& have = nullptr) {
    NUDGE_ASSIGN_OR_RETURN(out.records, t.ListJourneys(0));
    NUDGE_ASSIGN_OR_RETURN(auto policies, t.AllDefinitions("policies"));
    for (const auto& d : policies) {
      auto p = ParsePolicies(d.body, "stored policies");
      if (!p) return p.error();
      out.policies[d.workspace] = std::move(*p);
    }
    NUDGE_TRY(t.ScanActiveInstances([&](const store::Instance& i) -> Status {
      out.instances.push_back(i);
      return Status::Ok();
    }));
    std::set<std::tuple<WorkspaceId, std::string, int64_t>> needed;
    for (const auto& r : out.records) needed.insert({r.workspace, r.journey, r.version});
    for (const auto& i : out.instances) needed.insert({i.workspace, i.journey, i.version});
    for (const auto& [ws, id, version] : needed) {
      if (have && have(ws, id, version)) continue;
      NUDGE_ASSIGN_OR_RETURN(auto body, t.GetJourneyVersion(ws, id, version));
      if (body) out.bodies[{ws, id, version}] = *body;
    }
    return Status::Ok();
  }

  // The active instances into memory, each with its timer; then the date triggers from the
  // contacts' traits. Holds cache.mutex (shared at least) and mu.
  void AddInstances(const std::vector<store::Instance>& instances) {
    for (const auto& i : instances) {
      JourneyState* js = Find(i.workspace, i.journey);
      if (!js || !js->versions.count(i.version)) {
        spdlog::error("journey instance {} is on {} version {}, which is not loaded", i.id,
                      i.journey, i.version);
        continue;
      }
      const Journey& j = *js->versions.at(i.version);
      auto step = j.index.find(i.step);
      if (step == j.index.end()) continue;
      Active a;
      a.id = i.id;
      a.contact = i.contact;
      a.js = js;
      a.version = static_cast<int32_t>(i.version);
      a.step = static_cast<uint16_t>(step->second);
      const Step& s = j.steps[step->second];
      if (i.wake_at) {
        a.wait = s.kind == StepKind::kWait   ? Wait::kTimer
                 : s.kind == StepKind::kSend ? Wait::kQuiet
                 : s.wait_condition          ? Wait::kCondition
                                             : Wait::kEvent;
      }
      Active& added = active.Add(a);
      if (i.wake_at) Schedule(added, *i.wake_at);
    }
    cache.ForEach(0, [&](ContactId id, const profile::ContactState& st) {
      ScheduleDates(st.workspace, id, st.traits);
    });
  }

  // Every write that changes the engine's memory starts here (cache.mutex and mu held). Should
  // the write roll back (its own failure, or its group's), memory no longer matches the store:
  // an instance it started would wait in memory only, one it ended would never move again.
  // The next write then reloads from the store first, and one is queued at once so that timers
  // taken off the heap by a failed fire come back without waiting for traffic.
  Status Begin(store::WriteTxn& txn) {
    if (needs_reload) NUDGE_TRY(Reload(txn));
    txn.OnRollback([this] {
      needs_reload = true;
      if (std::exchange(reload_queued, true)) return;
      store.Write(
          [this](store::WriteTxn& t) -> Status {
            std::unique_lock cache_lock(cache.mutex);
            std::lock_guard lock(mu);
            reload_queued = false;
            return needs_reload ? Reload(t) : Status::Ok();
          },
          [](Status s) {
            // kUnavailable: the store is closing; the next start loads everything anyway.
            if (!s.ok() && s.code() != Code::kUnavailable)
              spdlog::error("reloading journeys after a rollback: {}", s.ToString());
          });
    });
    return Status::Ok();
  }
  // Begin for a write that may be refused: a refusal changes nothing, so it is checked before
  // Begin registers the rollback (which reloads everything: seconds at a million contacts), and
  // again after it, should Begin have reloaded.
  Status BeginUnless(store::WriteTxn& txn, const std::function<Status()>& refusal) {
    NUDGE_TRY(refusal());
    NUDGE_TRY(Begin(txn));
    return refusal();
  }
  // Both only on the writer thread (writes and their rollback hooks run there).
  bool needs_reload = false;
  bool reload_queued = false;

  // Memory from the store, read through the write's own transaction: it holds what the writes
  // before this one in its group changed. Definitions already in memory are kept (a version
  // that was never stored is dropped); instances, timers and date triggers are rebuilt.
  Status Reload(store::ReadTxn& t) {
    spdlog::warn("a write rolled back; reloading journey instances and timers from the store");
    reloads.fetch_add(1);
    if (reload_metric) reload_metric->Add();
    Stored stored;
    NUDGE_TRY(ReadStored(t, stored, [&](WorkspaceId ws, const std::string& id, int64_t v) {
      const JourneyState* js = Find(ws, id);
      return js && js->versions.count(v);
    }));
    policies = std::move(stored.policies);
    active = ActiveSet();
    emits.clear();
    date_scheduled.clear();
    {
      std::lock_guard lock(timer_mutex);
      timers = {};
      date_timers = {};
    }
    // No instance points at a journey now, so one that was never stored can go.
    std::map<std::pair<WorkspaceId, std::string>, const store::JourneyRecord*> records;
    for (const auto& r : stored.records) records[{r.workspace, r.journey}] = &r;
    std::erase_if(journeys, [&](const auto& kv) { return !records.count(kv.first); });
    for (auto& [key, js] : journeys) {
      const store::JourneyRecord& r = *records.at(key);
      std::erase_if(js.versions, [&](const auto& v) { return v.first > r.version; });
      std::erase_if(js.sources, [&](const auto& v) { return v.first > r.version; });
      js.current = r.version;
      js.status = r.status;
      js.updated_at = r.updated_at;
    }
    // Memory runs ahead of the store, so it has every stored version; should one be missing
    // all the same, its instances are left alone (logged) rather than run on a guess.
    for (const auto& [key, body] : stored.bodies)
      spdlog::error("journey {} version {} is stored but was not in memory", std::get<1>(key),
                    std::get<2>(key));
    std::erase_if(journeys,
                  [](const auto& kv) { return !kv.second.versions.count(kv.second.current); });
    AddInstances(stored.instances);
    needs_reload = false;
    return Status::Ok();
  }

  // ---- timers ----

  Status Fire(store::WriteTxn& txn, ContactId contact, int64_t id, Millis due) {
    const Active* found = active.Find(contact, id);
    if (!found || found->wake != due) return Status::Ok();  // stale
    Active a = *found;
    const JourneyState* js = a.js;
    if (!js) return Status::Ok();
    const Millis now = clock.NowMillis();
    if (js->status != kActive) return Status::Ok();  // paused: resumed later
    NUDGE_ASSIGN_OR_RETURN(auto inst, txn.GetInstance(id));
    if (!inst || inst->status != kActive) {
      Forget(contact, id);
      return Status::Ok();
    }
    if (lateness) lateness->Observe(static_cast<double>(now - due) / 1000.0);
    const Journey& j = *js->versions.at(a.version);
    const Step& step = j.steps[a.step];
    Data data = ParseData(inst->data);
    const Millis late_by = now - due;
    switch (a.wait) {
      case Wait::kTimer:
        return Run(txn, *inst, j, j.Resolve(a.step, step.next), data, late_by, false, now);
      case Wait::kQuiet:
        return Run(txn, *inst, j, a.step, data, late_by, true, now);
      case Wait::kCondition:
        if (segments.MatchesLocked(*step.wait_condition, a.contact, nullptr, false)) {
          data.fields.erase("deadline");
          NUDGE_TRY(txn.LogStep(*inst, step.id, "matched", now));
          return Run(txn, *inst, j,
                     j.Resolve(a.step, step.on_event.empty() ? step.next : step.on_event), data,
                     late_by, false, now);
        }
        if (data.fields.value("deadline", Millis{0}) > now) {
          Millis wake = data.fields["deadline"].get<Millis>();
          if (auto change = segments.NextChangeLocked(*step.wait_condition, a.contact);
              change && *change < wake)
            wake = *change;
          inst->wake_at = wake;
          if (Active* cur = active.Find(contact, id)) Schedule(*cur, wake);
          return Save(txn, *inst, data);
        }
        [[fallthrough]];
      case Wait::kEvent:
        data.fields.erase("deadline");
        NUDGE_TRY(txn.LogStep(*inst, step.id, "timed_out", now));
        return Run(txn, *inst, j,
                   j.Resolve(a.step, step.on_timeout.empty() ? step.next : step.on_timeout), data,
                   late_by, false, now);
      case Wait::kNone:
        return Status::Ok();
    }
    return Status::Ok();
  }

  Status FireDate(store::WriteTxn& txn, const DateTimer& d) {
    auto slot = date_scheduled.find({d.contact, d.journey});
    if (slot == date_scheduled.end() || slot->second != d.at) return Status::Ok();  // changed
    JourneyState* js = Find(d.ws, d.journey);
    if (!js || js->status != kActive || !cache.Get(d.contact)) return Status::Ok();
    if (clock.NowMillis() - d.at > js->def().max_lateness) return Status::Ok();  // long past
    json body{{"type", "track"},
              {"event", "Date Reached"},
              {"properties", {{"at", core::FormatIso8601(d.at)}}}};
    const std::string text = body.dump();
    return TryEnter(txn, *js, d.contact, &text, 0, "date:" + std::to_string(d.at));
  }

  void TimerLoop(Engine& self) {
    std::unique_lock lock(timer_mutex);
    while (!stopping) {
      Millis due = INT64_MAX;
      if (!timers.empty()) due = timers.top().at;
      if (!date_timers.empty()) due = std::min(due, date_timers.top().at);
      const Millis now = clock.NowMillis();
      if (due > now) {
        timer_cv.wait_for(lock, std::chrono::milliseconds(std::min<Millis>(due - now, 5000)));
        continue;
      }
      lock.unlock();
      Status s = self.RunDue();
      if (!s.ok()) {
        spdlog::error("journey timers: {}", s.ToString());
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      lock.lock();
    }
  }
};

// ---------------------------------------------------------------------------------------------

Engine::Engine(store::Store& store, segment::Engine& segments, profile::ContactCache& cache,
               const core::Clock& clock, core::MetricsRegistry* metrics, EngineOptions options)
    : impl_(std::make_unique<Impl>(store, segments, cache, clock, metrics, options)) {}

Engine::~Engine() { Stop(); }

void Engine::Stop() {
  {
    std::lock_guard lock(impl_->timer_mutex);
    impl_->stopping = true;
    impl_->timer_cv.notify_all();
  }
  if (impl_->timer_thread.joinable()) impl_->timer_thread.join();
}

Status Engine::Load() {
  Impl& m = *impl_;
  Impl::Stored stored;
  NUDGE_TRY(m.store.Read([&](store::ReadTxn& t) -> Status { return m.ReadStored(t, stored); }));
  for (const auto& [ws, p] : stored.policies) {
    std::set<std::string> doi;
    for (const auto& [channel, tmpl] : p.double_opt_in) doi.insert(channel);
    m.segments.SetDoubleOptIn(ws, std::move(doi));
  }
  std::lock_guard lock(m.mu);
  m.policies = std::move(stored.policies);
  for (const auto& r : stored.records) {
    JourneyState& js = m.journeys[{r.workspace, r.journey}];
    js.ws = r.workspace;
    js.id = r.journey;
    js.current = r.version;
    js.status = r.status;
    js.updated_at = r.updated_at;
  }
  for (const auto& [key, body] : stored.bodies) {
    const auto& [ws, id, version] = key;
    auto j = ParseJourney(body, "stored journey " + id, std::string_view(id));
    if (!j) return j.error();
    JourneyState& js = m.journeys[{ws, id}];
    js.ws = ws;
    js.id = id;
    js.versions[version] = std::make_shared<const Journey>(std::move(*j));
    js.sources[version] = body;
  }
  for (auto& [key, js] : m.journeys)
    for (const auto& [v, def] : js.versions)
      for (const auto& c : def->Conditions()) m.segments.Adopt(*c);
  {
    std::shared_lock cache_lock(m.cache.mutex);
    m.AddInstances(stored.instances);
  }
  spdlog::info("loaded {} journeys and {} active journey instances", m.journeys.size(),
               m.active.size());
  if (m.options.background_threads)
    m.timer_thread = std::thread([&m, this] { m.TimerLoop(*this); });
  return Status::Ok();
}

Result<JourneyInfo> Engine::PutJourney(WorkspaceId ws, std::string_view text,
                                       std::string_view source,
                                       std::optional<std::string_view> id) {
  Impl& m = *impl_;
  NUDGE_ASSIGN_OR_RETURN(Journey j, ParseJourney(text, source, id));
  CheckOptions check;
  check.segment_exists = [&](const std::string& s) { return m.segments.HasSegment(ws, s); };
  auto problems = CheckJourney(j, check);
  if (!problems.empty()) {
    std::string all;
    for (size_t i = 1; i < problems.size(); ++i) all += "; " + problems[i].ToString();
    return Err(Status::Invalid(problems[0].message() + all, problems[0].where()));
  }
  for (const auto& c : j.Conditions()) m.segments.Adopt(*c);
  auto def = std::make_shared<const Journey>(std::move(j));
  JourneyInfo info;
  const std::string body(text);
  NUDGE_TRY(m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock cache_lock(m.cache.mutex);
    std::lock_guard lock(m.mu);
    NUDGE_TRY(m.Begin(txn));
    const Millis now = m.clock.NowMillis();
    JourneyState& js = m.journeys[{ws, def->id}];
    const bool fresh = js.versions.empty();
    if (!fresh && js.sources.count(js.current) && js.sources[js.current] == body) {
      info = {js.id, js.current, js.status, js.versions[js.current], body, js.updated_at};
      return Status::Ok();
    }
    int64_t version = 1;
    if (!fresh) version = js.versions.rbegin()->first + 1;
    if (fresh) {
      NUDGE_ASSIGN_OR_RETURN(auto existing, txn.ListJourneys(ws));
      for (const auto& r : existing)
        if (r.journey == def->id) version = r.version + 1;
    }
    NUDGE_TRY(txn.PutJourneyVersion(ws, def->id, version, body, now));
    const std::string status = fresh || js.status == "archived" ? kActive : js.status;
    NUDGE_TRY(txn.PutJourney({ws, def->id, version, status, now}));
    NUDGE_ASSIGN_OR_RETURN(int64_t dv, txn.PutDefinition(ws, "journey", def->id, body, now));
    (void)dv;
    js.ws = ws;
    js.id = def->id;
    js.current = version;
    js.status = status;
    js.updated_at = now;
    js.versions[version] = def;
    js.sources[version] = body;
    if (def->trigger.kind == TriggerKind::kDate) {
      m.cache.ForEach(ws, [&](ContactId cid, const profile::ContactState& st) {
        m.ScheduleDates(ws, cid, st.traits);
      });
    }
    info = {js.id, version, status, def, body, now};
    return Status::Ok();
  }));
  return info;
}

Result<JourneyInfo> Engine::GetJourney(WorkspaceId ws, const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->journeys.find({ws, id});
  if (it == impl_->journeys.end() || it->second.versions.empty())
    return Err(Status::NotFound("no journey '" + id + "'"));
  const JourneyState& js = it->second;
  return JourneyInfo{js.id,
                     js.current,
                     js.status,
                     js.versions.at(js.current),
                     js.sources.count(js.current) ? js.sources.at(js.current) : "",
                     js.updated_at};
}

std::vector<JourneyInfo> Engine::ListJourneys(WorkspaceId ws) const {
  std::lock_guard lock(impl_->mu);
  std::vector<JourneyInfo> out;
  for (const auto& [key, js] : impl_->journeys) {
    if (js.ws != ws || js.versions.empty() || !js.versions.count(js.current)) continue;
    out.push_back({js.id, js.current, js.status, js.versions.at(js.current),
                   js.sources.count(js.current) ? js.sources.at(js.current) : "", js.updated_at});
  }
  return out;
}

Status Engine::SetStatus(WorkspaceId ws, const std::string& id, const std::string& status) {
  Impl& m = *impl_;
  if (status != kActive && status != "paused" && status != "archived")
    return Status::Invalid("a journey is active, paused or archived", "status");
  return m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock cache_lock(m.cache.mutex);
    std::lock_guard lock(m.mu);
    NUDGE_TRY(m.BeginUnless(txn, [&]() -> Status {
      const JourneyState* js = m.Find(ws, id);
      if (!js || js->versions.empty()) return Status::NotFound("no journey '" + id + "'");
      return Status::Ok();
    }));
    JourneyState* js = m.Find(ws, id);
    if (js->status == status) return Status::Ok();
    const Millis now = m.clock.NowMillis();
    const std::string before = js->status;
    js->status = status;
    js->updated_at = now;
    NUDGE_TRY(txn.PutJourney({ws, id, js->current, status, now}));
    if (status == "archived") {
      std::vector<int64_t> ids;
      m.active.ForEach([&](const Active& a) {
        if (a.js == js) ids.push_back(a.id);
      });
      for (int64_t iid : ids) {
        NUDGE_ASSIGN_OR_RETURN(auto inst, txn.GetInstance(iid));
        if (inst) NUDGE_TRY(m.End(txn, *inst, "exited", "archived", "exited", now));
      }
    }
    if (status == kActive && before == "paused") {
      // Timers that came due during the pause fire now.
      m.active.ForEach([&](Active& a) {
        if (a.js == js && a.wake && a.wake <= now) m.Schedule(a, a.wake);
      });
    }
    return m.FlushEmits(txn);
  });
}

Result<std::vector<StepStats>> Engine::Stats(WorkspaceId ws, const std::string& id) const {
  Impl& m = *impl_;
  std::shared_ptr<const Journey> def;
  std::map<std::string, int64_t> waiting;
  {
    std::lock_guard lock(m.mu);
    auto it = m.journeys.find({ws, id});
    if (it == m.journeys.end() || it->second.versions.empty())
      return Err(Status::NotFound("no journey '" + id + "'"));
    def = it->second.versions.at(it->second.current);
    m.active.ForEach([&](const Active& a) {
      if (a.js != &it->second) return;
      const auto& v = it->second.versions.at(a.version);
      if (a.step < v->steps.size()) ++waiting[v->steps[a.step].id];
    });
  }
  std::vector<store::StepCount> counts;
  NUDGE_TRY(m.store.Read([&](store::ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(counts, t.JourneyStepCounts(ws, id));
    return Status::Ok();
  }));
  std::vector<StepStats> out;
  for (const auto& s : def->steps) {
    StepStats st;
    st.step = s.id;
    st.kind = std::string(StepKindName(s.kind));
    st.waiting = waiting[s.id];
    for (const auto& c : counts) {
      if (c.step != s.id) continue;
      if (c.outcome == "entered") st.entered += c.count;
      if (c.outcome == "completed") st.completed += c.count;
      if (c.outcome == "exited") st.exited += c.count;
      if (c.outcome == "converted") st.converted += c.count;
      if (c.outcome == "skipped") st.skipped += c.count;
    }
    out.push_back(std::move(st));
  }
  return out;
}

void Engine::SetOutboxListener(std::function<void()> listener) {
  impl_->on_outbox = std::move(listener);
}

Status Engine::PutPolicies(WorkspaceId ws, Policies policies) {
  Impl& m = *impl_;
  NUDGE_TRY(m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock cache_lock(m.cache.mutex);
    std::lock_guard lock(m.mu);
    NUDGE_TRY(m.Begin(txn));
    NUDGE_ASSIGN_OR_RETURN(int64_t v, txn.PutDefinition(ws, "policies", "policies",
                                                        ToJson(policies), m.clock.NowMillis()));
    (void)v;
    m.policies[ws] = policies;
    return Status::Ok();
  }));
  // After the journey lock is released: the segment engine's lock is taken before it elsewhere.
  std::set<std::string> doi;
  for (const auto& [channel, tmpl] : policies.double_opt_in) doi.insert(channel);
  m.segments.SetDoubleOptIn(ws, std::move(doi));
  return Status::Ok();
}

Policies Engine::GetPolicies(WorkspaceId ws) const {
  std::lock_guard lock(impl_->mu);
  return impl_->PoliciesOf(ws);
}

uint64_t Engine::Reloads() const { return impl_->reloads.load(); }

Result<int64_t> Engine::Trigger(WorkspaceId ws, const std::string& id, ContactId contact,
                                const std::string& data) {
  Impl& m = *impl_;
  int64_t entered = 0;
  NUDGE_TRY(m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    std::unique_lock cache_lock(m.cache.mutex);
    std::lock_guard lock(m.mu);
    NUDGE_TRY(m.BeginUnless(txn, [&]() -> Status {
      const JourneyState* js = m.Find(ws, id);
      if (!js || js->versions.empty()) return Status::NotFound("no journey '" + id + "'");
      if (js->def().trigger.kind != TriggerKind::kApi)
        return Status(Code::kFailedPrecondition,
                      "journey '" + id + "' is not triggered by the API (trigger: { api: true })");
      if (js->status != kActive)
        return Status(Code::kFailedPrecondition, "journey '" + id + "' is " + js->status);
      return Status::Ok();
    }));
    JourneyState* js = m.Find(ws, id);
    const Millis now = m.clock.NowMillis();
    json body{{"type", "track"},
              {"event", "Journey Triggered"},
              {"properties", json::parse(data.empty() ? "{}" : data, nullptr, false)},
              {"timestamp", core::FormatIso8601(now)}};
    const std::string text = body.dump();
    NUDGE_TRY(m.TryEnter(txn, *js, contact, &text, 0,
                         "api:" + std::to_string(now) + ":" + core::NewUuid(), &entered));
    return m.FlushEmits(txn);
  }));
  return entered;
}

Status Engine::RunDue() {
  Impl& m = *impl_;
  const Millis now = m.clock.NowMillis();
  std::vector<InstanceTimer> due;
  std::vector<DateTimer> dates;
  {
    std::lock_guard lock(m.timer_mutex);
    while (!m.timers.empty() && m.timers.top().at <= now && due.size() < 20000) {
      due.push_back(m.timers.top());
      m.timers.pop();
    }
    while (!m.date_timers.empty() && m.date_timers.top().at <= now && dates.size() < 20000) {
      dates.push_back(m.date_timers.top());
      m.date_timers.pop();
    }
  }
  if (due.empty() && dates.empty()) return Status::Ok();
  for (size_t start = 0; start < std::max(due.size(), dates.size()); start += 2000) {
    NUDGE_TRY(m.store.WriteSync([&](store::WriteTxn& txn) -> Status {
      std::unique_lock cache_lock(m.cache.mutex);
      std::lock_guard lock(m.mu);
      NUDGE_TRY(m.Begin(txn));
      for (size_t k = start; k < std::min(due.size(), start + 2000); ++k) {
        const InstanceTimer& t = due[k];
        if (const Active* a = m.active.Find(t.contact, t.id))
          if (a->js && a->js->status == "paused" && a->wake == t.at) continue;  // held
        NUDGE_TRY(m.Fire(txn, t.contact, t.id, t.at));
      }
      for (size_t k = start; k < std::min(dates.size(), start + 2000); ++k)
        NUDGE_TRY(m.FireDate(txn, dates[k]));
      return m.FlushEmits(txn);
    }));
  }
  return Status::Ok();
}

std::optional<Millis> Engine::NextDue() const {
  std::lock_guard lock(impl_->timer_mutex);
  std::optional<Millis> due;
  if (!impl_->timers.empty()) due = impl_->timers.top().at;
  if (!impl_->date_timers.empty() && (!due || impl_->date_timers.top().at < *due))
    due = impl_->date_timers.top().at;
  return due;
}

size_t Engine::PendingTimers() const {
  std::lock_guard lock(impl_->timer_mutex);
  return impl_->timers.size() + impl_->date_timers.size();
}

Status Engine::OnContactCreated(store::WriteTxn& txn, const store::Contact& c) {
  std::lock_guard lock(impl_->mu);
  NUDGE_TRY(impl_->Begin(txn));
  impl_->ScheduleDates(c.workspace, c.id, c.traits);
  return Status::Ok();
}

Status Engine::OnContactChanged(store::WriteTxn& txn, const store::Contact& c,
                                std::string_view previous_traits) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  NUDGE_TRY(m.Begin(txn));
  NUDGE_TRY(m.HandleChange(txn, c, previous_traits));
  return m.FlushEmits(txn);
}

Status Engine::OnEvent(store::WriteTxn& txn, const store::Event& e) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  NUDGE_TRY(m.Begin(txn));
  NUDGE_TRY(m.HandleEvent(txn, e));
  return m.FlushEmits(txn);
}

Status Engine::OnContactsMerged(store::WriteTxn& txn, ContactId from, ContactId into) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  NUDGE_TRY(m.Begin(txn));
  NUDGE_TRY(txn.MoveInstances(from, into));
  // Timers name the contact: the moved instances' pending ones are queued again under `into`
  // (those under `from` find nothing and are skipped as stale).
  const std::vector<int64_t> moved = m.active.IdsOf(from);
  m.active.Move(from, into);
  for (int64_t id : moved)
    if (Active* a = m.active.Find(into, id); a && a->wake) m.Schedule(*a, a->wake);
  return Status::Ok();
}

Status Engine::OnContactDeleted(store::WriteTxn& txn, ContactId id) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  NUDGE_TRY(m.Begin(txn));
  // The store erased the instances with the contact; forget them here too.
  for (int64_t iid : m.active.IdsOf(id)) m.Forget(id, iid);
  std::erase_if(m.date_scheduled, [&](const auto& kv) { return kv.first.first == id; });
  return Status::Ok();
}

}  // namespace nudge::journey
