// /api/v1/templates, consent (/api/v1/contacts/{id}/consent, /subscriptions) and
// /api/v1/suppressions (docs/openapi.yaml).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/crypto.h"
#include "core/time.h"
#include "http/api.h"
#include "http/respond.h"
#include "profile/normalize.h"

namespace nudge::http {
namespace {

using nlohmann::json;
using store::WorkspaceId;

json TemplateJson(const content::TemplateInfo& info, bool with_source) {
  const content::MessageTemplate& t = *info.tmpl;
  json locales = json::array();
  for (const auto& [tag, parts] : t.locales) locales.push_back(tag);
  json j{{"id", t.id},
         {"name", t.name},
         {"channel", t.channel},
         {"topic", t.topic.empty() ? json(nullptr) : json(t.topic)},
         {"transactional", t.transactional},
         {"layout", t.layout.empty() ? json(nullptr) : json(t.layout)},
         {"locales", locales},
         {"partials", t.partials},
         {"version", info.version},
         {"updated_at", core::FormatIso8601(info.updated_at)}};
  if (with_source) j["source"] = t.source;
  return j;
}

json SubscriptionJson(const store::Subscription& s) {
  return json{{"channel", s.channel},
              {"topic", s.topic.empty() ? json(nullptr) : json(s.topic)},
              {"status", s.status},
              {"updated_at", core::FormatIso8601(s.updated_at)}};
}

json SuppressionJson(const store::Suppression& s) {
  return json{{"channel", s.channel},
              {"address", s.address},
              {"reason", s.reason},
              {"detail", s.detail.empty() ? json(nullptr) : json(s.detail)},
              {"created_at", core::FormatIso8601(s.created_at)}};
}

// A suppression address as stored: emails lowercased (the whole address: suppression is about
// mailboxes, and providers treat the local part case-insensitively in practice), phones E.164.
Result<std::string> NormalizeAddress(const std::string& channel, const std::string& address,
                                     const std::string& region) {
  if (channel == "email") {
    std::string a = address;
    const size_t s = a.find_first_not_of(" \t");
    const size_t e = a.find_last_not_of(" \t");
    a = s == std::string::npos ? "" : a.substr(s, e - s + 1);
    for (char& c : a)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const size_t at = a.find('@');
    if (a.empty() || at == std::string::npos || at == 0 || at + 1 == a.size() ||
        a.find(' ') != std::string::npos)
      return Err(Status::Invalid("'" + address + "' is not an email address", "address"));
    return a;
  }
  if (channel == "sms") {
    auto phone = profile::NormalizePhone(address, region);
    if (!phone) return Err(Status::Invalid("'" + address + "' is not a phone number", "address"));
    return *phone;
  }
  return Err(
      Status::Invalid("suppressions are for email or sms, not '" + channel + "'", "channel"));
}

class DeliveryApi {
 public:
  explicit DeliveryApi(ApiContext& ctx) : ctx_(ctx) {}

  // ---- templates ----

  void PutTemplate(WorkspaceId ws, Request& req, Reply reply) {
    const std::string& named = req.Header("x-nudge-source");
    auto info =
        ctx_.templates->Put(ws, req.body, named.empty() ? "request body" : named, req.params["id"]);
    if (!info) return reply(ErrorResponse(info.error()));
    json out = TemplateJson(*info, false);
    if (!info->tmpl->topic.empty()) {
      const auto warnings = UnknownTopicWarnings(ctx_, ws, {info->tmpl->topic});
      if (!warnings.empty()) out["warnings"] = warnings;
    }
    if (info->tmpl->channel == "sms") {
      // What the body's literal text costs, before personalization.
      out["sms"] = {{"note", "segments are counted per rendered message; see preview"}};
    }
    reply(JsonResponse(out));
  }

  void GetTemplate(WorkspaceId ws, Request& req, Reply reply) {
    auto info = ctx_.templates->Get(ws, req.params["id"]);
    if (!info)
      return reply(ErrorResponse(Status::NotFound("no template '" + req.params["id"] + "'")));
    reply(JsonResponse(TemplateJson(*info, true)));
  }

  void ListTemplates(WorkspaceId ws, Request& req, Reply reply) {
    json list = json::array();
    for (const auto& info : ctx_.templates->List(ws)) list.push_back(TemplateJson(info, false));
    reply(JsonResponse(json{{"templates", list}}));
  }

  void DeleteTemplate(WorkspaceId ws, Request& req, Reply reply) {
    auto removed = ctx_.templates->Delete(ws, req.params["id"]);
    if (!removed) return reply(ErrorResponse(removed.error()));
    if (!*removed)
      return reply(ErrorResponse(Status::NotFound("no template '" + req.params["id"] + "'")));
    reply(JsonResponse(json{{"deleted", true}}));
  }

  // ---- image templates ----

  void PutImage(WorkspaceId ws, Request& req, Reply reply) {
    if (!ctx_.images)
      return reply(ErrorResponse(Status::Unavailable("image templates are not available")));
    // {"yaml": "...", "assets": {"name": "<base64>"}}
    auto body = JsonObjectBody(req.body);
    if (!body) return reply(ErrorResponse(body.error()));
    auto info = ctx_.images->Put(ws, *body, req.params["id"]);
    if (!info) return reply(ErrorResponse(info.error()));
    json out = info->ToJson();
    out.erase("yaml");
    reply(JsonResponse(out));
  }

  void GetImage(WorkspaceId ws, Request& req, Reply reply) {
    auto info = ctx_.images ? ctx_.images->Get(ws, req.params["id"]) : std::nullopt;
    if (!info)
      return reply(ErrorResponse(Status::NotFound("no image template '" + req.params["id"] + "'")));
    reply(JsonResponse(info->ToJson()));
  }

  void ListImages(WorkspaceId ws, Request& req, Reply reply) {
    json list = json::array();
    if (ctx_.images) {
      for (const auto& info : ctx_.images->List(ws)) {
        json j = info.ToJson();
        j.erase("yaml");
        list.push_back(std::move(j));
      }
    }
    reply(JsonResponse(json{{"images", list}}));
  }

  void DeleteImage(WorkspaceId ws, Request& req, Reply reply) {
    if (!ctx_.images)
      return reply(ErrorResponse(Status::NotFound("no image template '" + req.params["id"] + "'")));
    auto removed = ctx_.images->Delete(ws, req.params["id"]);
    if (!removed) return reply(ErrorResponse(removed.error()));
    if (!*removed)
      return reply(ErrorResponse(Status::NotFound("no image template '" + req.params["id"] + "'")));
    reply(JsonResponse(json{{"deleted", true}}));
  }

  // {"user_id": "..."} (or "contact": key), or {"context": {...}} (used as is), with optional
  // "event": {...} merged into the context.
  void Preview(WorkspaceId ws, Request& req, Reply reply) {
    auto parsed = JsonObjectBody(req.body, /*empty_is_object=*/true);
    if (!parsed) return reply(ErrorResponse(parsed.error()));
    json& body = *parsed;
    auto info = ctx_.templates->Get(ws, req.params["id"]);
    if (!info)
      return reply(ErrorResponse(Status::NotFound("no template '" + req.params["id"] + "'")));
    json context;
    std::string key;
    if (body.contains("user_id") && body["user_id"].is_string()) key = body["user_id"];
    if (body.contains("contact") && body["contact"].is_string()) key = body["contact"];
    if (!key.empty()) {
      std::optional<store::Contact> c;
      Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
        NUDGE_ASSIGN_OR_RETURN(c, FindContactByKey(t, ws, key));
        return Status::Ok();
      });
      if (!s.ok()) return reply(ErrorResponse(s));
      if (!c) return reply(ErrorResponse(Status::NotFound("no contact '" + key + "'")));
      auto ctx = ctx_.delivery->ContextFor(ws, c->id, nullptr);
      if (!ctx) return reply(ErrorResponse(ctx.error()));
      context = std::move(*ctx);
    } else if (body.contains("context")) {
      if (!body["context"].is_object())
        return reply(ErrorResponse(Status::Invalid("must be a JSON object", "context")));
      context = body["context"];
    } else {
      return reply(ErrorResponse(
          Status::Invalid("give \"user_id\" (a contact) or \"context\" (the variables)", "body")));
    }
    if (body.contains("event")) {
      if (!body["event"].is_object())
        return reply(ErrorResponse(Status::Invalid("must be a JSON object", "event")));
      context["event"] = body["event"];
    }
    auto rendered = ctx_.delivery->Render(ws, req.params["id"], context);
    if (!rendered) return reply(ErrorResponse(rendered.error()));
    json out = rendered->ToJson();
    out["template"] = req.params["id"];
    out["channel"] = info->tmpl->channel;
    reply(JsonResponse(out));
  }

  // ---- consent ----

  Result<store::Contact> ContactOf(WorkspaceId ws, const std::string& key) {
    std::optional<store::Contact> c;
    NUDGE_TRY(ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(c, FindContactByKey(t, ws, key));
      return Status::Ok();
    }));
    if (!c) return Err(Status::NotFound("no contact '" + key + "'"));
    return *c;
  }

  void GetConsent(WorkspaceId ws, Request& req, Reply reply) {
    auto c = ContactOf(ws, req.params["id"]);
    if (!c) return reply(ErrorResponse(c.error()));
    std::vector<store::Subscription> subs;
    std::vector<store::ConsentRecord> history;
    std::vector<store::Suppression> suppressed;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(subs, t.SubscriptionsOf(c->id));
      NUDGE_ASSIGN_OR_RETURN(history, t.ConsentHistory(c->id));
      if (c->email) {
        NUDGE_ASSIGN_OR_RETURN(auto e, t.FindSuppression(ws, "email", *c->email));
        if (e) suppressed.push_back(*e);
      }
      if (c->phone) {
        NUDGE_ASSIGN_OR_RETURN(auto p, t.FindSuppression(ws, "sms", *c->phone));
        if (p) suppressed.push_back(*p);
      }
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    // The effective answer per channel and per topic the workspace defines.
    json effective = json::object();
    const journey::Policies policies = ctx_.journeys->GetPolicies(ws);
    for (const char* ch : {"email", "sms"}) {
      json topics = json::object();
      for (const auto& t : policies.topics) topics[t.id] = ctx_.engine->Subscribed(c->id, ch, t.id);
      effective[ch] = {{"subscribed", ctx_.engine->Subscribed(c->id, ch, "")}, {"topics", topics}};
    }
    json recorded = json::array();
    for (const auto& sub : subs) recorded.push_back(SubscriptionJson(sub));
    json log = json::array();
    for (const auto& r : history) {
      json j = SubscriptionJson(r.subscription);
      j["source"] = r.source;
      j["ip"] = r.ip.empty() ? json(nullptr) : json(r.ip);
      j["detail"] = r.detail.empty() ? json(nullptr) : json(r.detail);
      log.push_back(std::move(j));
    }
    json sup = json::array();
    for (const auto& x : suppressed) sup.push_back(SuppressionJson(x));
    reply(JsonResponse(json{{"contact_id", c->id},
                            {"effective", effective},
                            {"subscriptions", recorded},
                            {"history", log},
                            {"suppressions", sup}}));
  }

  // {"channel": "email", "topic": "news" (optional), "status": "subscribed" | "unsubscribed",
  //  "source": "signup-form", "ip": "...", "detail": "...", "confirmed": false}
  void PutSubscription(WorkspaceId ws, Request& req, Reply reply) {
    auto parsed = JsonObjectBody(req.body);
    if (!parsed) return reply(ErrorResponse(parsed.error()));
    json& body = *parsed;
    if (Status k = KnownFields(
            body, {"channel", "topic", "status", "source", "ip", "detail", "confirmed"});
        !k.ok())
      return reply(ErrorResponse(k));
    auto str = [&](const char* k) -> std::string {
      return body.contains(k) && body[k].is_string() ? body[k].get<std::string>() : "";
    };
    const std::string channel = str("channel");
    const std::string topic = str("topic");
    std::string status = str("status");
    if (channel != "email" && channel != "sms" && channel != "push")
      return reply(
          ErrorResponse(Status::Invalid("must be \"email\", \"sms\" or \"push\"", "channel")));
    if (status != "subscribed" && status != "unsubscribed")
      return reply(
          ErrorResponse(Status::Invalid("must be \"subscribed\" or \"unsubscribed\"", "status")));
    const journey::Policies policies = ctx_.journeys->GetPolicies(ws);
    if (!topic.empty()) {
      bool known = false;
      for (const auto& t : policies.topics) known = known || t.id == topic;
      if (!known)
        return reply(ErrorResponse(Status::Invalid(
            "'" + topic + "' is not a topic of this workspace (policies.yaml topics)", "topic")));
    }
    auto c = ContactOf(ws, req.params["id"]);
    if (!c) return reply(ErrorResponse(c.error()));
    auto confirmed_field = OptionalField(body, "confirmed", false);
    if (!confirmed_field) return reply(ErrorResponse(confirmed_field.error()));
    const bool confirmed = *confirmed_field;
    auto doi = policies.double_opt_in.find(channel);
    const bool needs_confirmation = status == "subscribed" && !confirmed && topic.empty() &&
                                    doi != policies.double_opt_in.end() &&
                                    !ctx_.engine->Subscribed(c->id, channel, "");
    if (needs_confirmation && (channel == "email" ? c->email : c->phone).value_or("").empty())
      return reply(ErrorResponse(
          Status(Code::kFailedPrecondition,
                 "the contact has no " +
                     std::string(channel == "email" ? "email address" : "phone number") +
                     " to send the confirmation to (double opt-in)")));
    if (needs_confirmation) status = "pending";
    store::ConsentRecord r;
    r.subscription = {ws, c->id, channel, topic, status, ctx_.clock.NowMillis()};
    r.source = str("source").empty() ? "api" : str("source");
    r.ip = str("ip");
    r.detail = str("detail");
    const std::string event = status == "unsubscribed" ? "Unsubscribed"
                              : status == "pending"    ? "Subscription Requested"
                                                       : "Subscribed";
    json props{{"channel", channel}, {"source", r.source}};
    if (!topic.empty()) props["topic"] = topic;
    Status s = ctx_.engine->ApplyConsent(r, event, props.dump());
    if (!s.ok()) return reply(ErrorResponse(s));
    // A whole channel: the suppression list follows, as it does for the unsubscribe link.
    if (topic.empty() && status == "unsubscribed")
      s = SuppressUnsubscribed(ctx_, ws, c->id, channel, r.source);
    if (topic.empty() && status == "subscribed")
      s = LiftUnsubscribeSuppression(ctx_, ws, c->id, channel);
    if (!s.ok()) return reply(ErrorResponse(s));
    json out{{"contact_id", c->id}, {"channel", channel}, {"status", status}};
    if (!topic.empty()) out["topic"] = topic;
    if (needs_confirmation) {
      // The confirmation message: transactional (it goes to someone not yet subscribed).
      store::Message m;
      m.workspace = ws;
      m.contact = c->id;
      m.channel = channel;
      m.template_id = doi->second;
      m.status = "queued";
      m.idempotency_key = "confirm:" + std::to_string(c->id) + ":" + channel + ":" +
                          std::to_string(r.subscription.updated_at);
      m.payload = json{{"transactional", true}, {"kind", "confirmation"}}.dump();
      m.created_at = m.send_at = m.updated_at = ctx_.clock.NowMillis();
      Status ms = ctx_.engine->WriteLocked([&](store::WriteTxn& txn) -> Status {
        NUDGE_ASSIGN_OR_RETURN(bool inserted, txn.InsertMessage(m));
        (void)inserted;
        return Status::Ok();
      });
      if (!ms.ok()) return reply(ErrorResponse(ms));
      if (ctx_.delivery) ctx_.delivery->Notify();
      out["confirmation_message_id"] = m.id;
    }
    reply(JsonResponse(out));
  }

  // ---- suppressions ----

  void ListSuppressions(WorkspaceId ws, Request& req, Reply reply) {
    auto limit = PageLimit(req, 100);
    if (!limit) return reply(ErrorResponse(limit.error()));
    std::string after;
    if (const std::string cur = req.Query("cursor"); !cur.empty()) {
      // A cursor is an address (an email or a number) this API encoded.
      auto d = core::Base64UrlDecode(cur);
      const bool address =
          d && !d->empty() && (d->find('@') != std::string::npos || d->front() == '+') &&
          std::none_of(d->begin(), d->end(),
                       [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; });
      if (!address)
        return reply(ErrorResponse(Status::Invalid("not a cursor from this API", "cursor")));
      after = *d;
    }
    const std::string channel = req.Query("channel");
    if (!channel.empty() && channel != "email" && channel != "sms")
      return reply(ErrorResponse(Status::Invalid("expected email or sms", "channel")));
    std::vector<store::Suppression> rows;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(rows, t.ListSuppressions(ws, after, *limit + 1));
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    const bool more = static_cast<int>(rows.size()) > *limit;
    if (more) rows.resize(static_cast<size_t>(*limit));
    json list = json::array();
    for (const auto& r : rows)
      if (channel.empty() || r.channel == channel) list.push_back(SuppressionJson(r));
    json out{{"suppressions", list}};
    out["next_cursor"] = more ? json(core::Base64UrlEncode(rows.back().address)) : json(nullptr);
    reply(JsonResponse(out));
  }

  // {"channel": "email", "address": "...", "reason": "manual", "detail": "..."}
  void AddSuppression(WorkspaceId ws, Request& req, Reply reply) {
    auto parsed = JsonObjectBody(req.body);
    if (!parsed) return reply(ErrorResponse(parsed.error()));
    json& body = *parsed;
    if (Status k = KnownFields(body, {"channel", "address", "reason", "detail"}); !k.ok())
      return reply(ErrorResponse(k));
    auto channel = OptionalField<std::string>(body, "channel", "email");
    auto reason = OptionalField<std::string>(body, "reason", "manual");
    auto detail = OptionalField<std::string>(body, "detail", "");
    for (const auto* field : {&channel, &reason, &detail})
      if (!*field) return reply(ErrorResponse(field->error()));
    if (!body.contains("address") || body["address"].is_null())
      return reply(ErrorResponse(Status::Invalid("is required", "address")));
    if (!body["address"].is_string())
      return reply(ErrorResponse(Status::Invalid("must be a string", "address")));
    if (*reason != "manual" && *reason != "unsubscribed" && *reason != "hard_bounce" &&
        *reason != "complaint")
      return reply(ErrorResponse(
          Status::Invalid("must be manual, unsubscribed, hard_bounce or complaint", "reason")));
    auto address = NormalizeAddress(*channel, body["address"].get<std::string>(),
                                    ctx_.applier.options().default_region);
    if (!address) return reply(ErrorResponse(address.error()));
    store::Suppression sup;
    sup.workspace = ws;
    sup.channel = *channel;
    sup.address = *address;
    sup.reason = *reason;
    sup.detail = *detail;
    sup.created_at = ctx_.clock.NowMillis();
    // The entry as stored: an address already on the list keeps a stronger reason (a bounce
    // is not turned into an unsubscribe), and the answer says so (200, not 201).
    std::optional<store::Suppression> before, stored;
    Status s = ctx_.store.WriteSync([&](store::WriteTxn& txn) -> Status {
      NUDGE_ASSIGN_OR_RETURN(before, txn.FindSuppression(ws, sup.channel, sup.address));
      NUDGE_TRY(txn.AddSuppression(sup));
      NUDGE_ASSIGN_OR_RETURN(stored, txn.FindSuppression(ws, sup.channel, sup.address));
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    reply(JsonResponse(SuppressionJson(stored ? *stored : sup), before ? 200 : 201));
  }

  void RemoveSuppression(WorkspaceId ws, Request& req, Reply reply) {
    const std::string channel = req.params["channel"];
    auto address =
        NormalizeAddress(channel, req.params["address"], ctx_.applier.options().default_region);
    if (!address) return reply(ErrorResponse(address.error()));
    bool removed = false;
    Status s = ctx_.store.WriteSync([&](store::WriteTxn& txn) -> Status {
      NUDGE_ASSIGN_OR_RETURN(removed, txn.RemoveSuppression(ws, channel, *address));
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    if (!removed)
      return reply(ErrorResponse(Status::NotFound(*address + " is not suppressed for " + channel)));
    reply(JsonResponse(json{{"removed", true}, {"channel", channel}, {"address", *address}}));
  }

 private:
  ApiContext& ctx_;
};

}  // namespace

void AddDeliveryRoutes(Router& router, ApiContext& ctx) {
  auto api = std::make_shared<DeliveryApi>(ctx);
  auto bind = [api, &ctx](void (DeliveryApi::*m)(WorkspaceId, Request&, Reply)) {
    return AdminRoute(api, ctx, m);
  };
  router.Add("GET", "/api/v1/templates", bind(&DeliveryApi::ListTemplates))
      .Add("PUT", "/api/v1/templates/{id}", bind(&DeliveryApi::PutTemplate), 1 << 20)
      .Add("GET", "/api/v1/templates/{id}", bind(&DeliveryApi::GetTemplate))
      .Add("DELETE", "/api/v1/templates/{id}", bind(&DeliveryApi::DeleteTemplate))
      .Add("POST", "/api/v1/templates/{id}/preview", bind(&DeliveryApi::Preview))
      .Add("GET", "/api/v1/images", bind(&DeliveryApi::ListImages))
      .Add("PUT", "/api/v1/images/{id}", bind(&DeliveryApi::PutImage),
           content::kMaxImageDefinitionBytes * 4 / 3 + 65536)
      .Add("GET", "/api/v1/images/{id}", bind(&DeliveryApi::GetImage))
      .Add("DELETE", "/api/v1/images/{id}", bind(&DeliveryApi::DeleteImage))
      .Add("GET", "/api/v1/contacts/{id}/consent", bind(&DeliveryApi::GetConsent))
      .Add("PUT", "/api/v1/contacts/{id}/subscriptions", bind(&DeliveryApi::PutSubscription))
      .Add("GET", "/api/v1/suppressions", bind(&DeliveryApi::ListSuppressions))
      .Add("POST", "/api/v1/suppressions", bind(&DeliveryApi::AddSuppression))
      .Add("DELETE", "/api/v1/suppressions/{channel}/{address}",
           bind(&DeliveryApi::RemoveSuppression));
}

}  // namespace nudge::http
