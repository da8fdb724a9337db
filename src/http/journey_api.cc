// /api/v1/journeys, /api/v1/messages, /api/v1/policies (docs/openapi.yaml).
#include <nlohmann/json.hpp>

#include "content/library.h"
#include "core/crypto.h"
#include "core/time.h"
#include "http/api.h"
#include "http/respond.h"

namespace nudge::http {
namespace {

using nlohmann::json;
using store::WorkspaceId;

json TriggerJson(const journey::Trigger& t) {
  switch (t.kind) {
    case journey::TriggerKind::kEvent: {
      json j{{"event", t.event}};
      return j;
    }
    case journey::TriggerKind::kSegmentEntered:
      return {{"segment_entered", t.segment}};
    case journey::TriggerKind::kSegmentExited:
      return {{"segment_exited", t.segment}};
    case journey::TriggerKind::kStageChanged:
      return {{"stage_changed", t.stage.empty() ? "any" : t.stage}};
    case journey::TriggerKind::kTraitChanged: {
      std::string path = "traits";
      for (const auto& p : t.trait) path += "." + p;
      return {{"trait_changed", path}};
    }
    case journey::TriggerKind::kDate: {
      std::string path = "traits";
      for (const auto& p : t.trait) path += "." + p;
      return {{"date", path}, {"offset_ms", t.offset}};
    }
    case journey::TriggerKind::kApi:
      return {{"api", true}};
  }
  return json::object();
}

json StatsJson(const std::vector<journey::StepStats>& stats) {
  json out = json::array();
  for (const auto& s : stats)
    out.push_back(json{{"step", s.step},
                       {"kind", s.kind},
                       {"entered", s.entered},
                       {"waiting", s.waiting},
                       {"completed", s.completed},
                       {"exited", s.exited},
                       {"converted", s.converted},
                       {"skipped", s.skipped}});
  return out;
}

json JourneyJson(const journey::JourneyInfo& info) {
  const journey::Journey& j = *info.definition;
  json steps = json::array();
  for (const auto& s : j.steps)
    steps.push_back(json{{"id", s.id}, {"kind", journey::StepKindName(s.kind)}});
  return json{{"id", info.id},         {"name", j.name},
              {"goal", j.goal},        {"version", info.version},
              {"status", info.status}, {"trigger", TriggerJson(j.trigger)},
              {"steps", steps},        {"updated_at", core::FormatIso8601(info.updated_at)},
              {"source", info.source}};
}

json MessageJson(const store::Message& m) {
  return json{{"id", m.id},
              {"contact_id", m.contact},
              {"journey", m.journey.empty() ? json(nullptr) : json(m.journey)},
              {"version", m.version},
              {"step", m.step.empty() ? json(nullptr) : json(m.step)},
              {"instance_id", m.instance},
              {"channel", m.channel},
              {"template", m.template_id.empty() ? json(nullptr) : json(m.template_id)},
              {"status", m.status},
              {"idempotency_key", m.idempotency_key},
              {"payload", json::parse(m.payload, nullptr, false)},
              {"detail", m.detail.empty() ? json(nullptr) : json(m.detail)},
              {"created_at", core::FormatIso8601(m.created_at)},
              {"send_at", core::FormatIso8601(m.send_at)},
              {"updated_at", core::FormatIso8601(m.updated_at)}};
}

std::string SourceOf(const Request& req) {
  const std::string& named = req.Header("x-nudge-source");
  return named.empty() ? "request body" : named;
}

class JourneyApi {
 public:
  explicit JourneyApi(ApiContext& ctx) : ctx_(ctx) {}

  // A journey may name templates published after it (apply publishes templates first), so
  // one not there yet is a warning in the answer, not a refusal: until it exists, delivery
  // fails its messages ("not defined").
  void Put(WorkspaceId ws, Request& req, Reply reply) {
    auto info = ctx_.journeys->PutJourney(ws, req.body, SourceOf(req), req.params["id"]);
    if (!info) return reply(ErrorResponse(info.error()));
    json out = JourneyJson(*info);
    json warnings = json::array();
    if (ctx_.templates) {
      for (const auto& t : info->definition->Templates())
        if (!ctx_.templates->Get(ws, t))
          warnings.push_back("template '" + t + "' does not exist yet (PUT /api/v1/templates/" + t +
                             "); until it does, its messages fail");
    }
    for (auto& w : UnknownTopicWarnings(ctx_, ws, info->definition->Topics()))
      warnings.push_back(std::move(w));
    if (!warnings.empty()) out["warnings"] = std::move(warnings);
    reply(JsonResponse(out));
  }

  void Get(WorkspaceId ws, Request& req, Reply reply) {
    auto info = ctx_.journeys->GetJourney(ws, req.params["id"]);
    if (!info) return reply(ErrorResponse(info.error()));
    json out = JourneyJson(*info);
    auto stats = ctx_.journeys->Stats(ws, req.params["id"]);
    if (stats) out["stats"] = StatsJson(*stats);
    reply(JsonResponse(out));
  }

  void List(WorkspaceId ws, Request&, Reply reply) {
    json out = json::array();
    for (const auto& info : ctx_.journeys->ListJourneys(ws)) {
      json j = JourneyJson(info);
      j.erase("source");
      out.push_back(std::move(j));
    }
    reply(JsonResponse(json{{"journeys", std::move(out)}}));
  }

  void Stats(WorkspaceId ws, Request& req, Reply reply) {
    auto stats = ctx_.journeys->Stats(ws, req.params["id"]);
    reply(stats ? JsonResponse(json{{"steps", StatsJson(*stats)}}) : ErrorResponse(stats.error()));
  }

  void SetStatus(WorkspaceId ws, Request& req, Reply reply, const std::string& status) {
    Status s = ctx_.journeys->SetStatus(ws, req.params["id"], status);
    if (!s.ok()) return reply(ErrorResponse(s));
    Get(ws, req, std::move(reply));
  }
  void Pause(WorkspaceId ws, Request& req, Reply reply) {
    SetStatus(ws, req, std::move(reply), "paused");
  }
  void Resume(WorkspaceId ws, Request& req, Reply reply) {
    SetStatus(ws, req, std::move(reply), "active");
  }
  void Archive(WorkspaceId ws, Request& req, Reply reply) {
    SetStatus(ws, req, std::move(reply), "archived");
  }

  // POST /api/v1/journeys/{id}/trigger {"user_id": "...", "data": {...}}
  void Trigger(WorkspaceId ws, Request& req, Reply reply) {
    auto parsed = JsonObjectBody(req.body);
    if (!parsed) return reply(ErrorResponse(parsed.error()));
    json& body = *parsed;
    std::string key;
    for (const char* k : {"user_id", "contact", "email"})
      if (body.contains(k) && body[k].is_string()) key = body[k].get<std::string>();
    if (key.empty())
      return reply(
          ErrorResponse(Status::Invalid("is required (the contact's user id)", "user_id")));
    if (body.contains("data") && !body["data"].is_object())
      return reply(ErrorResponse(Status::Invalid("must be an object", "data")));
    store::ContactId contact = 0;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto c, FindContactByKey(t, ws, key));
      if (!c) return Status::NotFound("no contact '" + key + "'");
      contact = c->id;
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    auto id = ctx_.journeys->Trigger(ws, req.params["id"], contact,
                                     body.contains("data") ? body["data"].dump() : "{}");
    if (!id) return reply(ErrorResponse(id.error()));
    reply(JsonResponse(
        json{{"entered", *id != 0}, {"instance_id", *id ? json(*id) : json(nullptr)}}));
  }

  void Instances(WorkspaceId ws, Request& req, Reply reply) {
    auto limit = PageLimit(req, 50);
    if (!limit) return reply(ErrorResponse(limit.error()));
    auto before = IdCursor(req);
    if (!before) return reply(ErrorResponse(before.error()));
    if (!ctx_.journeys->GetJourney(ws, req.params["id"]))
      return reply(ErrorResponse(Status::NotFound("no journey '" + req.params["id"] + "'")));
    json out = json::array();
    json next = nullptr;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      std::optional<store::ContactId> contact;
      if (const std::string key = req.Query("contact"); !key.empty()) {
        NUDGE_ASSIGN_OR_RETURN(auto c, FindContactByKey(t, ws, key));
        if (!c) return Status::NotFound("no contact '" + key + "'");
        contact = c->id;
      }
      NUDGE_ASSIGN_OR_RETURN(auto rows,
                             t.ListInstances(ws, req.params["id"], contact, *limit + 1, *before));
      const bool more = static_cast<int>(rows.size()) > *limit;
      if (more) rows.pop_back();
      if (more) next = core::Base64UrlEncode(std::to_string(rows.back().id));
      for (const auto& i : rows) {
        NUDGE_ASSIGN_OR_RETURN(auto steps, t.InstanceSteps(i.id));
        json path = json::array();
        for (const auto& [step, outcome, at] : steps)
          path.push_back(
              json{{"step", step}, {"outcome", outcome}, {"at", core::FormatIso8601(at)}});
        json data = json::parse(i.data, nullptr, false);
        out.push_back(
            json{{"id", i.id},
                 {"contact_id", i.contact},
                 {"version", i.version},
                 {"status", i.status},
                 {"step", i.step.empty() ? json(nullptr) : json(i.step)},
                 {"wake_at", i.wake_at ? json(core::FormatIso8601(*i.wake_at)) : json(nullptr)},
                 {"entered_at", core::FormatIso8601(i.entered_at)},
                 {"updated_at", core::FormatIso8601(i.updated_at)},
                 {"variants", data.is_object() && data.contains("variants") ? data["variants"]
                                                                            : json::object()},
                 {"path", std::move(path)}});
      }
      return Status::Ok();
    });
    reply(s.ok() ? JsonResponse(json{{"instances", std::move(out)}, {"next_cursor", next}})
                 : ErrorResponse(s));
  }

  // GET /api/v1/messages?contact=&journey=&status=&limit=&cursor=
  void Messages(WorkspaceId ws, Request& req, Reply reply) {
    auto limit = PageLimit(req, 50);
    if (!limit) return reply(ErrorResponse(limit.error()));
    store::MessageFilter f;
    f.workspace = ws;
    f.limit = *limit + 1;
    if (const std::string j = req.Query("journey"); !j.empty()) f.journey = j;
    if (const std::string st = req.Query("status"); !st.empty()) f.status = st;
    auto before = IdCursor(req);
    if (!before) return reply(ErrorResponse(before.error()));
    f.before_id = *before;
    json out = json::array();
    json next = nullptr;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      if (const std::string key = req.Query("contact"); !key.empty()) {
        NUDGE_ASSIGN_OR_RETURN(auto c, FindContactByKey(t, ws, key));
        if (!c) return Status::NotFound("no contact '" + key + "'");
        f.contact = c->id;
      }
      NUDGE_ASSIGN_OR_RETURN(auto rows, t.ListMessages(f));
      const bool more = static_cast<int>(rows.size()) > *limit;
      if (more) rows.pop_back();
      for (const auto& m : rows) out.push_back(MessageJson(m));
      if (more) next = core::Base64UrlEncode(std::to_string(rows.back().id));
      return Status::Ok();
    });
    reply(s.ok() ? JsonResponse(json{{"messages", std::move(out)}, {"next_cursor", next}})
                 : ErrorResponse(s));
  }

  void PutPolicies(WorkspaceId ws, Request& req, Reply reply) {
    auto p = journey::ParsePolicies(req.body, SourceOf(req));
    if (!p) return reply(ErrorResponse(p.error()));
    Status s = ctx_.journeys->PutPolicies(ws, *p);
    if (!s.ok()) return reply(ErrorResponse(s));
    reply(JsonResponse(json::parse(journey::ToJson(ctx_.journeys->GetPolicies(ws)))));
  }

  void GetPolicies(WorkspaceId ws, Request&, Reply reply) {
    reply(JsonResponse(json::parse(journey::ToJson(ctx_.journeys->GetPolicies(ws)))));
  }

 private:
  ApiContext& ctx_;
};

}  // namespace

void AddJourneyRoutes(Router& router, ApiContext& ctx) {
  auto api = std::make_shared<JourneyApi>(ctx);
  auto bind = [api, &ctx](void (JourneyApi::*m)(WorkspaceId, Request&, Reply)) {
    return AdminRoute(api, ctx, m);
  };
  router.Add("GET", "/api/v1/journeys", bind(&JourneyApi::List))
      .Add("PUT", "/api/v1/journeys/{id}", bind(&JourneyApi::Put))
      .Add("GET", "/api/v1/journeys/{id}", bind(&JourneyApi::Get))
      .Add("GET", "/api/v1/journeys/{id}/stats", bind(&JourneyApi::Stats))
      .Add("GET", "/api/v1/journeys/{id}/instances", bind(&JourneyApi::Instances))
      .Add("POST", "/api/v1/journeys/{id}/pause", bind(&JourneyApi::Pause))
      .Add("POST", "/api/v1/journeys/{id}/resume", bind(&JourneyApi::Resume))
      .Add("POST", "/api/v1/journeys/{id}/archive", bind(&JourneyApi::Archive))
      .Add("POST", "/api/v1/journeys/{id}/trigger", bind(&JourneyApi::Trigger))
      .Add("GET", "/api/v1/messages", bind(&JourneyApi::Messages))
      .Add("PUT", "/api/v1/policies", bind(&JourneyApi::PutPolicies))
      .Add("GET", "/api/v1/policies", bind(&JourneyApi::GetPolicies));
}

}  // namespace nudge::http
