#include "channel/delivery.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "content/liquid.h"
#include "core/crypto.h"
#include "core/time.h"
#include "core/url.h"
#include "journey/policies.h"
#include "profile/views.h"
#include "track/rewrite.h"

namespace nudge::channel {
namespace {

using core::Millis;
using nlohmann::json;

void NameThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

// What the checks decided for a message.
enum class Verdict { kSend, kFinal, kDefer };

struct Picked {
  store::Message message;
  Verdict verdict = Verdict::kSend;
  std::optional<store::Contact> contact;
  std::shared_ptr<const content::MessageTemplate> tmpl;
  bool transactional = false;
  std::string topic;
};

// One answer to write back.
struct Answer {
  int64_t id = 0;
  DeliveryResult result;
};

}  // namespace

std::string ChannelEventPrefix(std::string_view channel) {
  if (channel == "email") return "Email";
  if (channel == "sms") return "SMS";
  if (channel == "webhook") return "Webhook";
  if (channel == "push") return "Push";
  std::string s(channel);
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

std::string MessageIdHeader(const store::Message& m, std::string_view domain) {
  // The id and the moment it was queued: stable across retries and restarts, and unique across
  // nudge installations sending from one domain in practice.
  return std::to_string(m.id) + "." + std::to_string(m.created_at) + "." +
         std::to_string(m.workspace) + ".nudge@" +
         std::string(domain.empty() ? "nudge.invalid" : domain);
}

struct Dispatcher::Impl {
  Impl(DeliveryDeps deps, DeliveryOptions options) : d(deps), o(std::move(options)) {
    if (!o.public_url.empty() && o.public_url.back() == '/') o.public_url.pop_back();
    if (d.metrics) {
      sent = &d.metrics->GetCounter("nudge_messages_sent_total", "Messages a channel accepted.");
      failed =
          &d.metrics->GetCounter("nudge_messages_failed_total", "Messages that failed for good.");
      suppressed = &d.metrics->GetCounter("nudge_messages_suppressed_total",
                                          "Messages not sent: suppressed or not subscribed.");
      retried = &d.metrics->GetCounter("nudge_messages_retried_total",
                                       "Temporary failures queued again.");
      d.metrics->AddGauge("nudge_queue_depth", "Work waiting in a queue.", "{queue=\"delivery\"}",
                          [this] {
                            std::lock_guard lock(mu);
                            return static_cast<double>(in_flight.size());
                          });
    }
  }

  DeliveryDeps d;
  DeliveryOptions o;

  mutable std::mutex mu;
  std::condition_variable cv;                     // the delivery thread waits here
  std::condition_variable work_cv;                // workers wait here
  std::condition_variable idle_cv;                // RunOnce and Stop wait here
  bool notified = false;                          // GUARDED_BY(mu)
  bool stopping = false;                          // GUARDED_BY(mu)
  bool workers_stop = false;                      // GUARDED_BY(mu)
  std::unordered_map<int64_t, Picked> in_flight;  // GUARDED_BY(mu): picked, not yet written
  // Messages whose outcome was written (and that left in_flight) since the running pick began
  // its read: its snapshot may be older than that write and still show them due, so the pick
  // skips them. Cleared when a pick starts (one pick runs at a time).
  std::unordered_set<int64_t> recently_settled;  // GUARDED_BY(mu)

  // Leaves in_flight after the write that settles `ids` committed. REQUIRES(mu)
  void SettleLocked(const std::vector<int64_t>& ids) {
    for (int64_t id : ids) {
      in_flight.erase(id);
      recently_settled.insert(id);
    }
  }
  std::deque<int64_t> work;     // GUARDED_BY(mu): ids for the workers
  std::vector<Answer> answers;  // GUARDED_BY(mu)
  size_t writes_pending = 0;    // GUARDED_BY(mu)
  std::thread thread;
  std::vector<std::thread> workers;
  std::mt19937_64 rng{std::random_device{}()};

  std::mutex ws_mu;
  std::map<store::WorkspaceId, std::string> ws_names;  // GUARDED_BY(ws_mu)

  core::Counter* sent = nullptr;
  core::Counter* failed = nullptr;
  core::Counter* suppressed = nullptr;
  core::Counter* retried = nullptr;

  Millis Now() const { return d.clock.NowMillis(); }

  // ---- picking and checking ----

  std::string AddressOf(const store::Contact& c, const std::string& channel) const {
    if (channel == "email") return c.email.value_or("");
    if (channel == "sms") return c.phone.value_or("");
    return "";
  }

  std::string TimeZoneOf(const store::Contact& c, const journey::Policies& p) const {
    const json traits = json::parse(c.traits, nullptr, false);
    std::string tz;
    if (traits.is_object() && traits.contains("timezone") && traits["timezone"].is_string())
      tz = traits["timezone"].get<std::string>();
    return journey::ChooseTimeZone(tz, p.timezone);
  }

  // Decides what happens to a due message now. Fills p.verdict and, for a final or deferred
  // verdict, the message's new status.
  Status Check(Picked& p, Millis now, std::unordered_map<store::ContactId, int64_t>& batch_sends,
               store::ReadTxn& r) {
    store::Message& m = p.message;
    auto finish = [&](const char* status, std::string detail) {
      p.verdict = Verdict::kFinal;
      m.status = status;
      m.detail = std::move(detail);
      m.updated_at = now;
      return Status::Ok();
    };
    if (!d.channels.Find(m.channel))
      return finish("failed", "the " + m.channel + " channel is not configured (nudge.yaml)");
    const json payload = json::parse(m.payload, nullptr, false);
    if (payload.is_object() && payload.value("transactional", false)) p.transactional = true;
    if (m.channel != "webhook") {
      auto info = d.templates.Get(m.workspace, m.template_id);
      if (!info) return finish("failed", "template '" + m.template_id + "' is not defined");
      if (info->tmpl->channel != m.channel)
        return finish("failed", "template '" + m.template_id + "' is for " + info->tmpl->channel +
                                    ", not " + m.channel);
      p.tmpl = info->tmpl;
      p.transactional = p.transactional || p.tmpl->transactional;
      p.topic = p.tmpl->topic;
    }
    NUDGE_ASSIGN_OR_RETURN(p.contact, r.GetContact(m.contact));
    if (!p.contact) return finish("failed", "the contact was erased");
    if (m.channel == "webhook") {
      p.verdict = Verdict::kSend;
      return Status::Ok();
    }
    const std::string address = AddressOf(*p.contact, m.channel);
    if (address.empty())
      return finish("failed", m.channel == "email" ? "the contact has no email address"
                                                   : "the contact has no phone number");
    m.recipient = address;
    NUDGE_ASSIGN_OR_RETURN(auto suppression, r.FindSuppression(m.workspace, m.channel, address));
    // An unsubscribe stops marketing, not the receipts and confirmations a contact asks for;
    // bounces, complaints and manual entries stop everything.
    if (suppression && !(p.transactional && suppression->reason == "unsubscribed"))
      return finish("suppressed",
                    "the address is on the suppression list (" + suppression->reason + ")");
    if (!p.transactional && !d.segments.Subscribed(m.contact, m.channel, p.topic)) {
      return finish("suppressed",
                    p.topic.empty()
                        ? "not subscribed to " + m.channel + " (unsubscribed or unconfirmed)"
                        : "not subscribed to " + m.channel + " topic '" + p.topic + "'");
    }
    if (!p.transactional) {
      const journey::Policies policies = d.journeys.GetPolicies(m.workspace);
      if (auto q = policies.quiet_hours.find(m.channel); q != policies.quiet_hours.end()) {
        const std::string tz = TimeZoneOf(*p.contact, policies);
        if (auto until = journey::QuietUntil(now, tz, q->second)) {
          p.verdict = Verdict::kDefer;
          m.status = "deferred_quiet_hours";
          m.send_at = *until;
          m.updated_at = now;
          m.detail = "quiet hours in " + tz + " until " + core::FormatIso8601(*until);
          return Status::Ok();
        }
      }
      if (auto c = policies.caps.find(m.channel); c != policies.caps.end()) {
        NUDGE_ASSIGN_OR_RETURN(
            int64_t recent, r.CountSentMessages(m.contact, m.channel, now - c->second.per, m.id));
        recent += batch_sends[m.contact];
        if (recent >= c->second.max)
          return finish("capped", std::to_string(recent) + " " + m.channel +
                                      " messages already sent in the cap's period");
      }
    }
    ++batch_sends[m.contact];
    p.verdict = Verdict::kSend;
    return Status::Ok();
  }

  // Picks due messages, checks them and claims those that go out. Returns how many it picked.
  Result<int> PickRound() {
    const Millis now = Now();
    std::vector<store::Message> due;
    {
      std::lock_guard lock(mu);
      if (in_flight.size() >= o.max_in_flight) return 0;
      // Settled before this read begins: its snapshot shows their outcome.
      recently_settled.clear();
    }
    std::vector<Picked> picked;
    std::unordered_map<store::ContactId, int64_t> batch_sends;
    NUDGE_TRY(d.store.Read([&](store::ReadTxn& r) -> Status {
      store::DueCursor cursor;
      for (int page = 0; page < 64 && static_cast<int>(picked.size()) < o.batch; ++page) {
        NUDGE_ASSIGN_OR_RETURN(due, r.DueMessages(now, o.batch, cursor));
        if (due.empty()) break;
        if (o.after_due_read) o.after_due_read();
        for (auto& m : due) {
          {
            std::lock_guard lock(mu);
            if (in_flight.count(m.id) || recently_settled.count(m.id)) continue;
          }
          Picked p;
          p.message = std::move(m);
          NUDGE_TRY(Check(p, now, batch_sends, r));
          picked.push_back(std::move(p));
          if (static_cast<int>(picked.size()) >= o.batch) break;
        }
      }
      return Status::Ok();
    }));
    if (picked.empty()) return 0;

    // Claims and final verdicts in one write; sends start without waiting for its commit (a
    // crash before it leaves them queued, and they go again with the same Message-ID).
    std::vector<store::Message> rows;
    std::vector<int64_t> to_send;
    for (auto& p : picked) {
      store::Message& m = p.message;
      if (p.verdict == Verdict::kSend) {
        m.status = "sending";
        m.attempts += 1;
        m.updated_at = now;
        if (m.channel == "email") m.message_id_header = MessageIdHeader(m, o.message_id_domain);
        to_send.push_back(m.id);
      } else if (p.verdict == Verdict::kFinal) {
        if (m.status == "suppressed" || m.status == "capped") {
          if (suppressed) suppressed->Add();
        } else if (failed) {
          failed->Add();
        }
      }
      rows.push_back(m);
    }
    std::vector<int64_t> settle;  // picked ids the write settles (not sends)
    {
      std::lock_guard lock(mu);
      for (auto& p : picked) {
        if (p.verdict != Verdict::kSend) settle.push_back(p.message.id);
        const int64_t id = p.message.id;
        in_flight[id] = std::move(p);
      }
      ++writes_pending;
    }
    d.segments.WriteLockedAsync(
        [rows = std::move(rows)](store::WriteTxn& txn) -> Status {
          for (const auto& m : rows) NUDGE_TRY(txn.UpdateMessageDelivery(m));
          return Status::Ok();
        },
        [this, settle = std::move(settle)](const Status& s) {
          if (!s.ok()) spdlog::error("delivery: recording claims failed: {}", s.ToString());
          {
            std::lock_guard lock(mu);
            SettleLocked(settle);
            --writes_pending;
          }
          idle_cv.notify_all();
          cv.notify_all();
        });
    if (!to_send.empty()) {
      {
        std::lock_guard lock(mu);
        for (int64_t id : to_send) work.push_back(id);
      }
      if (o.background) work_cv.notify_all();
    }
    return static_cast<int>(picked.size());
  }

  // ---- rendering and sending (workers) ----

  std::string WorkspaceName(store::WorkspaceId ws) {
    {
      std::lock_guard lock(ws_mu);
      if (auto it = ws_names.find(ws); it != ws_names.end()) return it->second;
    }
    std::string name;
    (void)d.store.Read([&](store::ReadTxn& r) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto all, r.ListWorkspaces());
      std::lock_guard lock(ws_mu);
      for (const auto& w : all) {
        ws_names[w.id] = w.name;
        if (w.id == ws) name = w.name;
      }
      return Status::Ok();
    });
    return name;
  }

  std::string Url(const track::LinkSigner& signer, track::LinkKind kind, const store::Message* m,
                  store::WorkspaceId ws, store::ContactId contact, const std::string& channel,
                  const std::string& extra) const {
    track::LinkClaims c;
    c.kind = kind;
    c.workspace = ws;
    c.contact = contact;
    c.message = m ? m->id : 0;
    c.channel = channel;
    c.extra = extra;
    return o.public_url + track::LinkPath(signer, c);
  }

  Result<json> Context(store::WorkspaceId ws, store::ContactId contact_id, const store::Message* m,
                       const std::optional<store::Contact>& known) {
    json ctx = json::object();
    std::optional<store::Contact> contact = known;
    std::vector<std::string> anon, aliases;
    std::optional<store::Event> event;
    const json payload = m ? json::parse(m->payload, nullptr, false) : json();
    NUDGE_TRY(d.store.Read([&](store::ReadTxn& r) -> Status {
      if (!contact) {
        NUDGE_ASSIGN_OR_RETURN(contact, r.GetContact(contact_id));
      }
      if (!contact) return Status::NotFound("no contact " + std::to_string(contact_id));
      NUDGE_ASSIGN_OR_RETURN(anon, r.ListIdentities(contact->id, store::IdentityKind::kAnonymous));
      NUDGE_ASSIGN_OR_RETURN(aliases, r.ListIdentities(contact->id, store::IdentityKind::kAlias));
      const int64_t ev = payload.is_object() ? payload.value("trigger_event_id", int64_t{0}) : 0;
      if (ev > 0) {
        NUDGE_ASSIGN_OR_RETURN(event, r.GetEvent(ev));
      }
      return Status::Ok();
    }));
    if (contact->workspace != ws) return Err(Status::NotFound("no such contact in this workspace"));
    json c = profile::ContactJson(*contact, anon, aliases);
    const segment::ContactView view = d.segments.View(contact->id);
    c["segments"] = view.segments;
    c["score"] = view.score.score;
    c["qualification"] =
        view.score.qualification.empty() ? json(nullptr) : json(view.score.qualification);
    c["stage"] = view.stage.empty() ? json(nullptr) : json(view.stage);
    ctx["contact"] = std::move(c);
    ctx["event"] = event ? profile::EventJson(*event) : json::object();
    const journey::Policies policies = d.journeys.GetPolicies(ws);
    ctx["workspace"] = {{"id", ws}, {"name", WorkspaceName(ws)}, {"timezone", policies.timezone}};
    if (!policies.currency.empty()) ctx["workspace"]["currency"] = policies.currency;
    json journey = json::object();
    json message = json::object();
    auto signer = d.secrets.SignerFor(ws);
    if (signer) {
      const std::string channel = m ? m->channel : "email";
      message["unsubscribe_url"] =
          Url(*signer, track::LinkKind::kUnsubscribe, m, ws, contact->id, channel, "");
      message["preferences_url"] =
          Url(*signer, track::LinkKind::kPreferences, m, ws, contact->id, channel, "");
      message["view_in_browser_url"] =
          m ? Url(*signer, track::LinkKind::kView, m, ws, contact->id, channel, "") : "";
      // A double opt-in confirmation carries the signed link that confirms the subscription.
      const bool confirmation =
          payload.is_object() && payload.value("kind", std::string()) == "confirmation";
      message["confirm_url"] =
          confirmation ? Url(*signer, track::LinkKind::kConfirm, m, ws, contact->id, channel, "")
                       : "";
    }
    if (m) {
      message["id"] = m->id;
      message["channel"] = m->channel;
      message["template"] = m->template_id;
      if (!m->journey.empty()) {
        journey = {{"id", m->journey}, {"version", m->version}, {"step", m->step}};
        if (auto info = d.journeys.GetJourney(ws, m->journey); info && info->definition)
          journey["name"] = info->definition->name;
      }
    }
    ctx["journey"] = std::move(journey);
    ctx["message"] = std::move(message);
    return ctx;
  }

  Result<content::RenderedMessage> RenderWith(store::WorkspaceId ws,
                                              const content::MessageTemplate& tmpl, const json& ctx,
                                              store::ContactId contact, const store::Message* m) {
    NUDGE_ASSIGN_OR_RETURN(content::Context lc, content::Context::FromJson(ctx));
    content::TemplateRenderOptions ro;
    ro.partials = &d.templates.Partials(ws);
    ro.clock = &d.clock;
    if (!tmpl.layout.empty()) {
      auto layout = d.templates.Get(ws, tmpl.layout);
      if (!layout || layout->tmpl->channel != "partial")
        return Err(Status::NotFound("layout '" + tmpl.layout + "' is not defined"));
      ro.layout = layout->tmpl->parts.body;
    }
    content::RenderEnv env;
    auto signer = d.secrets.SignerFor(ws);
    if (signer) {
      const track::LinkSigner s = *signer;
      env.image_url = [this, s, ws, contact, m](std::string_view image, std::string_view format) {
        track::LinkClaims c;
        c.kind = track::LinkKind::kImage;
        c.workspace = ws;
        c.contact = contact;
        c.message = m ? m->id : 0;
        c.extra = std::string(image);
        return o.public_url + "/i/" + core::PercentEncode(image) + "/" + s.Sign(c) +
               (format.empty() ? "" : "." + std::string(format));
      };
    }
    content::RenderScope scope(&env);
    return content::RenderTemplate(tmpl, lc, ro);
  }

  // Renders the Liquid of a webhook step (url, body, header values) in text mode.
  Result<json> RenderWebhook(const json& payload, const json& ctx) {
    NUDGE_ASSIGN_OR_RETURN(content::Context lc, content::Context::FromJson(ctx));
    content::CompileOptions co;
    co.filters = content::NudgeFilters();
    auto render = [&](const std::string& text, const char* what) -> Result<std::string> {
      auto t = content::Template::Compile(text, co);
      if (!t) return Err(Status::Invalid(std::string(what) + ": " + t.error().message()));
      content::RenderOptions ro;
      ro.clock = &d.clock;
      return (*t)->Render(lc, ro);
    };
    json out = json::object();
    NUDGE_ASSIGN_OR_RETURN(std::string url, render(payload.value("url", ""), "url"));
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
      return Err(Status::Invalid("url: '" + url + "' is not an http(s) URL"));
    out["url"] = url;
    out["method"] = payload.value("method", "POST");
    NUDGE_ASSIGN_OR_RETURN(std::string body, render(payload.value("body", ""), "body"));
    out["body"] = body;
    json headers = json::object();
    if (payload.contains("headers") && payload["headers"].is_object()) {
      for (const auto& [k, v] : payload["headers"].items()) {
        if (!v.is_string()) continue;
        NUDGE_ASSIGN_OR_RETURN(std::string hv, render(v.get<std::string>(), "headers"));
        if (hv.find('\r') != std::string::npos || hv.find('\n') != std::string::npos)
          return Err(Status::Invalid("headers." + k + ": a header value has no line breaks"));
        headers[k] = hv;
      }
    }
    out["headers"] = headers;
    return out;
  }

  // Builds what the channel sends; on error the message fails for good (a template problem).
  Result<Outbound> Prepare(const Picked& p) {
    const store::Message& m = p.message;
    Outbound out;
    out.message = m;
    out.recipient = m.recipient;
    out.transactional = p.transactional;
    out.topic = p.topic;
    NUDGE_ASSIGN_OR_RETURN(json ctx, Context(m.workspace, m.contact, &m, p.contact));
    if (m.channel == "webhook") {
      const json payload = json::parse(m.payload, nullptr, false);
      NUDGE_ASSIGN_OR_RETURN(out.webhook, RenderWebhook(payload, ctx));
      return out;
    }
    NUDGE_ASSIGN_OR_RETURN(out.rendered, RenderWith(m.workspace, *p.tmpl, ctx, m.contact, &m));
    if (m.channel != "email") return out;
    NUDGE_ASSIGN_OR_RETURN(track::LinkSigner signer, d.secrets.SignerFor(m.workspace));
    out.message_id_header = m.message_id_header;
    out.unsubscribe_url =
        Url(signer, track::LinkKind::kUnsubscribe, &m, m.workspace, m.contact, m.channel, p.topic);
    out.preferences_url =
        Url(signer, track::LinkKind::kPreferences, &m, m.workspace, m.contact, m.channel, "");
    if (!o.unsubscribe_mailbox.empty()) {
      track::LinkClaims c{
          track::LinkKind::kUnsubscribe, m.workspace, m.contact, m.id, m.channel, p.topic};
      out.unsubscribe_mailto =
          "mailto:" + o.unsubscribe_mailbox + "?subject=unsubscribe%20" + signer.Sign(c);
    }
    out.feedback_id = (m.journey.empty() ? std::string("api") : m.journey) + ":" +
                      (m.step.empty() ? m.template_id : m.step) + ":" +
                      std::to_string(m.workspace) + ":nudge";
    if (o.track_clicks) {
      const std::string own = o.public_url + "/t/";
      track::TrackFn track = [&](const std::string& url) -> std::optional<std::string> {
        if (url.rfind(own, 0) == 0 || url.rfind(o.public_url + "/i/", 0) == 0) return std::nullopt;
        if (!track::IsRedirectable(url)) return std::nullopt;
        return Url(signer, track::LinkKind::kClick, &m, m.workspace, m.contact, m.channel, url);
      };
      // A link marked data-nudge-track="off" in the HTML stays as it is in the text part too.
      std::set<std::string> untracked;
      out.rendered.html = track::RewriteHtmlLinks(out.rendered.html, track, &untracked);
      out.rendered.text = track::RewriteTextLinks(out.rendered.text, [&](const std::string& url) {
        return untracked.count(url) ? std::nullopt : track(url);
      });
    }
    if (o.track_opens && !out.rendered.html.empty()) {
      track::InsertOpenPixel(out.rendered.html, Url(signer, track::LinkKind::kOpen, &m, m.workspace,
                                                    m.contact, m.channel, ""));
    }
    return out;
  }

  void Deliver(int64_t id) {
    Picked p;
    {
      std::lock_guard lock(mu);
      auto it = in_flight.find(id);
      if (it == in_flight.end()) return;
      p = it->second;
    }
    auto answer = [this, id](DeliveryResult r) {
      {
        std::lock_guard lock(mu);
        answers.push_back({id, std::move(r)});
      }
      cv.notify_all();
    };
    auto out = Prepare(p);
    if (!out) {
      DeliveryResult r;
      r.status = out.error().code() == Code::kUnavailable ? DeliveryStatus::kTemporary
                                                          : DeliveryStatus::kPermanent;
      r.detail = "render: " + out.error().ToString();
      answer(std::move(r));
      return;
    }
    Channel* ch = d.channels.Find(p.message.channel);
    if (!ch) {
      answer({DeliveryStatus::kPermanent, 0, "the channel is not configured", "", false, false});
      return;
    }
    Status s = ch->Send(std::move(*out), answer);
    if (!s.ok()) {
      DeliveryResult r;
      r.status =
          s.code() == Code::kUnavailable ? DeliveryStatus::kTemporary : DeliveryStatus::kPermanent;
      r.detail = s.ToString();
      answer(std::move(r));
    }
  }

  void WorkerLoop(int index) {
    NameThread("deliver-" + std::to_string(index));
    for (;;) {
      int64_t id = 0;
      {
        std::unique_lock lock(mu);
        work_cv.wait(lock, [&] { return !work.empty() || workers_stop; });
        if (work.empty()) return;
        id = work.front();
        work.pop_front();
      }
      Deliver(id);
    }
  }

  // ---- answers ----

  Millis Backoff(int attempts) {
    double delay = static_cast<double>(o.retry_initial) *
                   std::pow(o.retry_multiplier, std::max(0, attempts - 1));
    delay = std::min(delay, static_cast<double>(o.retry_max));
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    return static_cast<Millis>(delay * jitter(rng));
  }

  // Writes the answers gathered so far. Returns how many.
  size_t WriteAnswers() {
    std::vector<Answer> batch;
    std::vector<Picked> picked;
    {
      std::lock_guard lock(mu);
      if (answers.empty()) return 0;
      batch.swap(answers);
      for (const auto& a : batch) {
        auto it = in_flight.find(a.id);
        picked.push_back(it == in_flight.end() ? Picked{} : it->second);
      }
      ++writes_pending;
    }
    const Millis now = Now();
    struct Row {
      store::Message m;
      std::string event;
      json props;
      bool suppress = false;
      std::string suppress_reason = "hard_bounce";
    };
    std::vector<Row> rows;
    for (size_t i = 0; i < batch.size(); ++i) {
      const DeliveryResult& r = batch[i].result;
      Row row;
      row.m = picked[i].message;
      if (row.m.id == 0) continue;
      store::Message& m = row.m;
      m.updated_at = now;
      const std::string prefix = ChannelEventPrefix(m.channel);
      row.props = {{"message_id", m.id},   {"channel", m.channel}, {"template", m.template_id},
                   {"journey", m.journey}, {"step", m.step},       {"instance", m.instance},
                   {"attempt", m.attempts}};
      switch (r.status) {
        case DeliveryStatus::kSent:
          m.status = "sent";
          m.detail = r.detail;
          row.event = prefix + " Sent";
          if (!r.provider.empty()) row.props["provider"] = r.provider;
          if (sent) sent->Add();
          break;
        case DeliveryStatus::kTemporary: {
          const bool may_retry =
              m.attempts < o.max_attempts && now - m.created_at < o.give_up_after;
          if (may_retry) {
            m.status = "queued";
            // No try after give_up_after: a pause that would end past it ends there instead
            // (the last try), and the failure after that is final.
            m.send_at = std::min(now + Backoff(static_cast<int>(m.attempts)),
                                 m.created_at + o.give_up_after);
            m.detail = "attempt " + std::to_string(m.attempts) + " failed (" + r.detail +
                       "); next try at " + core::FormatIso8601(m.send_at);
            if (retried) retried->Add();
          } else {
            m.status = "failed";
            m.detail = "gave up after " + std::to_string(m.attempts) + " attempts: " + r.detail;
            row.event = prefix + " Failed";
            row.props["reason"] = m.detail;
            if (failed) failed->Add();
          }
          break;
        }
        case DeliveryStatus::kPermanent:
          m.status = "failed";
          m.detail = r.detail;
          if (r.bad_address) {
            row.event = prefix + " Bounced";
            row.props["bounce_type"] = "hard";
            row.props["source"] = "delivery";
            row.props["code"] = r.provider_code ? r.provider_code : r.code;
            row.props["reason"] = r.detail;
            row.suppress = true;
          } else {
            row.event = prefix + " Failed";
            row.props["reason"] = r.detail;
            if (r.provider_code) row.props["code"] = r.provider_code;
            if (r.unsubscribed) {
              // Sending again would be refused again: the number is suppressed as unsubscribed
              // (transactional messages are still tried).
              row.suppress = true;
              row.suppress_reason = "unsubscribed";
            }
          }
          if (failed) failed->Add();
          break;
      }
      rows.push_back(std::move(row));
    }
    std::vector<int64_t> ids;
    for (const auto& a : batch) ids.push_back(a.id);
    d.segments.WriteLockedAsync(
        [this, rows = std::move(rows), now](store::WriteTxn& txn) -> Status {
          for (const Row& row : rows) {
            NUDGE_TRY(txn.UpdateMessageDelivery(row.m));
            if (row.suppress && !row.m.recipient.empty()) {
              store::Suppression s;
              s.workspace = row.m.workspace;
              s.channel = row.m.channel;
              s.address = row.m.recipient;
              s.reason = row.suppress_reason;
              s.created_at = now;
              s.detail = row.m.detail;
              NUDGE_TRY(txn.AddSuppression(s));
            }
            if (row.event.empty()) continue;
            const store::ContactId contact = d.segments.ResolveLocked(row.m.contact);
            if (!d.segments.TraitsLocked(contact)) continue;  // erased meanwhile
            if (row.suppress && row.suppress_reason == "hard_bounce")
              NUDGE_TRY(txn.CountBounce(contact, true, now));
            NUDGE_TRY(d.segments.EmitLocked(
                txn, contact, row.event, row.props.dump(),
                "delivery:" + std::to_string(row.m.id) + ":" + std::to_string(row.m.attempts),
                /*stable=*/true));
          }
          return Status::Ok();
        },
        [this, ids = std::move(ids)](const Status& s) {
          if (!s.ok()) spdlog::error("delivery: recording outcomes failed: {}", s.ToString());
          {
            std::lock_guard lock(mu);
            SettleLocked(ids);
            --writes_pending;
          }
          idle_cv.notify_all();
          cv.notify_all();
        });
    return batch.size();
  }

  // ---- the delivery thread ----

  void Loop() {
    NameThread("delivery");
    for (;;) {
      {
        std::unique_lock lock(mu);
        if (stopping) break;
      }
      WriteAnswers();
      auto picked = PickRound();
      if (!picked) spdlog::error("delivery: {}", picked.error().ToString());
      WriteAnswers();
      std::unique_lock lock(mu);
      if (stopping) break;
      if (picked && *picked > 0 && in_flight.size() < o.max_in_flight) continue;
      cv.wait_for(lock, std::chrono::milliseconds(o.poll),
                  [&] { return notified || stopping || !answers.empty(); });
      notified = false;
    }
  }
};

Dispatcher::Dispatcher(DeliveryDeps deps, DeliveryOptions options)
    : impl_(std::make_unique<Impl>(deps, std::move(options))) {}

Dispatcher::~Dispatcher() { Stop(0); }

Status Dispatcher::Start() {
  Impl& m = *impl_;
  NUDGE_TRY(m.d.store.WriteSync([&](store::WriteTxn& txn) -> Status {
    NUDGE_ASSIGN_OR_RETURN(int64_t n, txn.RequeueSending(m.Now()));
    if (n > 0)
      spdlog::warn("delivery: {} message(s) were being sent at the last stop; sending again", n);
    return Status::Ok();
  }));
  if (!m.o.background) return Status::Ok();
  for (int i = 0; i < std::max(1, m.o.workers); ++i)
    m.workers.emplace_back([&m, i] { m.WorkerLoop(i); });
  m.thread = std::thread([&m] { m.Loop(); });
  return Status::Ok();
}

void Dispatcher::Notify() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->notified = true;
  }
  impl_->cv.notify_all();
}

void Dispatcher::Stop(core::Millis drain) {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (m.stopping && !m.thread.joinable() && m.workers.empty()) return;
    m.stopping = true;
  }
  m.cv.notify_all();
  if (m.thread.joinable()) m.thread.join();
  // Let the channels answer what is in flight, and write those answers.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain);
  for (;;) {
    m.WriteAnswers();
    std::unique_lock lock(m.mu);
    const bool sends_left = std::any_of(m.in_flight.begin(), m.in_flight.end(), [](const auto& kv) {
      return kv.second.verdict == Verdict::kSend;
    });
    if ((!sends_left && m.answers.empty() && m.writes_pending == 0) ||
        std::chrono::steady_clock::now() >= deadline)
      break;
    m.idle_cv.wait_for(lock, std::chrono::milliseconds(20));
  }
  {
    std::lock_guard lock(m.mu);
    m.workers_stop = true;
    m.work.clear();
  }
  m.work_cv.notify_all();
  for (auto& w : m.workers) w.join();
  m.workers.clear();
  // Wait for the writes already submitted (their callbacks touch this object).
  std::unique_lock lock(m.mu);
  m.idle_cv.wait_for(lock, std::chrono::seconds(10), [&] { return m.writes_pending == 0; });
}

Result<int> Dispatcher::RunOnce(core::Millis wait) {
  Impl& m = *impl_;
  NUDGE_ASSIGN_OR_RETURN(int picked, m.PickRound());
  // Without background threads the work list is served here.
  for (;;) {
    int64_t id = 0;
    {
      std::lock_guard lock(m.mu);
      if (m.work.empty()) break;
      id = m.work.front();
      m.work.pop_front();
    }
    m.Deliver(id);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait);
  for (;;) {
    m.WriteAnswers();
    std::unique_lock lock(m.mu);
    const bool sends_left = std::any_of(m.in_flight.begin(), m.in_flight.end(), [](const auto& kv) {
      return kv.second.verdict == Verdict::kSend;
    });
    if (!sends_left && m.answers.empty() && m.writes_pending == 0) break;
    if (std::chrono::steady_clock::now() >= deadline)
      return Err(Status::Unavailable("delivery: answers still outstanding"));
    m.idle_cv.wait_for(lock, std::chrono::milliseconds(5));
  }
  return picked;
}

Result<nlohmann::json> Dispatcher::ContextFor(store::WorkspaceId ws, store::ContactId contact,
                                              const store::Message* message) {
  return impl_->Context(ws, contact, message, std::nullopt);
}

Result<content::RenderedMessage> Dispatcher::Render(store::WorkspaceId ws,
                                                    const std::string& template_id,
                                                    const nlohmann::json& context) {
  auto info = impl_->d.templates.Get(ws, template_id);
  if (!info) return Err(Status::NotFound("no template '" + template_id + "'"));
  store::ContactId contact = 0;
  if (context.contains("contact") && context["contact"].is_object() &&
      context["contact"].contains("id") && context["contact"]["id"].is_number_integer())
    contact = context["contact"]["id"].get<int64_t>();
  return impl_->RenderWith(ws, *info->tmpl, context, contact, nullptr);
}

Result<std::string> Dispatcher::BrowserView(int64_t message_id) {
  Impl& m = *impl_;
  std::optional<store::Message> msg;
  NUDGE_TRY(m.d.store.Read([&](store::ReadTxn& r) -> Status {
    NUDGE_ASSIGN_OR_RETURN(msg, r.GetMessage(message_id));
    return Status::Ok();
  }));
  if (!msg || msg->channel != "email") return Err(Status::NotFound("no such message"));
  auto info = m.d.templates.Get(msg->workspace, msg->template_id);
  if (!info) return Err(Status::NotFound("the message's template no longer exists"));
  NUDGE_ASSIGN_OR_RETURN(json ctx, m.Context(msg->workspace, msg->contact, &*msg, std::nullopt));
  NUDGE_ASSIGN_OR_RETURN(auto rendered,
                         m.RenderWith(msg->workspace, *info->tmpl, ctx, msg->contact, &*msg));
  if (!rendered.html.empty()) return rendered.html;
  return "<pre>" + rendered.text + "</pre>";
}

size_t Dispatcher::InFlight() const {
  std::lock_guard lock(impl_->mu);
  return impl_->in_flight.size();
}

}  // namespace nudge::channel
