// /api/v1/segments, /api/v1/scoring, /api/v1/stages: definitions as YAML or JSON bodies,
// membership, previews and stage counts (docs/openapi.yaml).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/crypto.h"
#include "core/time.h"
#include "http/api.h"
#include "http/respond.h"
#include "journey/engine.h"
#include "profile/views.h"

namespace nudge::http {
namespace {

using nlohmann::json;
using store::WorkspaceId;

json SegmentJson(const segment::SegmentInfo& s) {
  return json{{"id", s.def.id},
              {"name", s.def.name},
              {"description", s.def.description},
              {"condition", s.def.condition_text},
              {"version", s.version},
              {"status", s.status},
              {"member_count", s.members},
              {"updated_at", core::FormatIso8601(s.updated_at)}};
}

// Where errors in a body are reported: the client may name its file (nudge apply does).
std::string SourceOf(const Request& req) {
  const std::string& named = req.Header("x-nudge-source");
  return named.empty() ? "request body" : named;
}

class SegmentApi {
 public:
  explicit SegmentApi(ApiContext& ctx) : ctx_(ctx) {}

  void Put(WorkspaceId ws, Request& req, Reply reply) {
    auto def = segment::ParseSegment(req.body, SourceOf(req), req.params["id"]);
    if (!def) return reply(ErrorResponse(def.error()));
    const auto warnings = UnknownTopicWarnings(ctx_, ws, def->condition->topics());
    auto info = ctx_.engine->PutSegment(ws, std::move(*def));
    if (!info) return reply(ErrorResponse(info.error()));
    json out = SegmentJson(*info);
    if (!warnings.empty()) out["warnings"] = warnings;
    reply(JsonResponse(out));
  }

  void Get(WorkspaceId ws, Request& req, Reply reply) {
    auto info = ctx_.engine->GetSegment(ws, req.params["id"]);
    reply(info ? JsonResponse(SegmentJson(*info)) : ErrorResponse(info.error()));
  }

  void List(WorkspaceId ws, Request&, Reply reply) {
    json out = json::array();
    for (const auto& s : ctx_.engine->ListSegments(ws)) out.push_back(SegmentJson(s));
    reply(JsonResponse(json{{"segments", std::move(out)}}));
  }

  void Delete(WorkspaceId ws, Request& req, Reply reply) {
    // A journey that is not archived and names the segment (trigger, test group, conditions)
    // would silently stop working: refused, like a segment that another one names.
    if (ctx_.journeys) {
      for (const auto& j : ctx_.journeys->ListJourneys(ws)) {
        if (j.status == "archived" || !j.definition) continue;
        const auto used = j.definition->Segments();
        if (std::find(used.begin(), used.end(), req.params["id"]) != used.end())
          return reply(ErrorResponse(Status(
              Code::kFailedPrecondition, "journey '" + j.id + "' uses segment '" +
                                             req.params["id"] + "'; change or archive it first")));
      }
    }
    Status s = ctx_.engine->DeleteSegment(ws, req.params["id"]);
    reply(s.ok() ? JsonResponse(json{{"deleted", true}, {"id", req.params["id"]}})
                 : ErrorResponse(s));
  }

  void Members(WorkspaceId ws, Request& req, Reply reply) {
    const std::string id = req.params["id"];
    if (!ctx_.engine->HasSegment(ws, id))
      return reply(ErrorResponse(Status::NotFound("no segment '" + id + "'")));
    auto limit = PageLimit(req, 50);
    if (!limit) return reply(ErrorResponse(limit.error()));
    auto after = IdCursor(req);
    if (!after) return reply(ErrorResponse(after.error()));
    json members = json::array();
    json next = nullptr;
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto rows, t.ListSegmentMembers(ws, id, *after, *limit + 1));
      const bool more = static_cast<int>(rows.size()) > *limit;
      if (more) rows.pop_back();
      for (const auto& m : rows) {
        NUDGE_ASSIGN_OR_RETURN(auto c, t.GetContact(m.contact));
        if (!c) continue;
        json j{{"id", c->id},
               {"user_id", c->user_id ? json(*c->user_id) : json(nullptr)},
               {"email", c->email ? json(*c->email) : json(nullptr)},
               {"since", core::FormatIso8601(m.since)}};
        members.push_back(std::move(j));
      }
      if (more) next = core::Base64UrlEncode(std::to_string(rows.back().contact));
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    reply(JsonResponse(json{{"members", std::move(members)}, {"next_cursor", next}}));
  }

  // POST /api/v1/segments/preview {"condition": "...", "sample": 10}
  void Preview(WorkspaceId ws, Request& req, Reply reply) {
    auto parsed = JsonObjectBody(req.body);
    if (!parsed) return reply(ErrorResponse(parsed.error()));
    json& body = *parsed;
    if (!body.contains("condition") || !body["condition"].is_string())
      return reply(ErrorResponse(Status::Invalid("is required (a string)", "condition")));
    auto sample = OptionalField<size_t>(body, "sample", 10);
    if (!sample) return reply(ErrorResponse(sample.error()));
    auto p = ctx_.engine->PreviewCondition(ws, body["condition"].get<std::string>(),
                                           std::min<size_t>(*sample, 100));
    if (!p) return reply(ErrorResponse(p.error()));
    json out = json::array();
    Status s = ctx_.store.Read([&](store::ReadTxn& t) -> Status {
      for (store::ContactId id : p->sample) {
        NUDGE_ASSIGN_OR_RETURN(auto c, t.GetContact(id));
        if (c)
          out.push_back(json{{"id", c->id},
                             {"user_id", c->user_id ? json(*c->user_id) : json(nullptr)},
                             {"email", c->email ? json(*c->email) : json(nullptr)}});
      }
      return Status::Ok();
    });
    if (!s.ok()) return reply(ErrorResponse(s));
    reply(JsonResponse(
        json{{"count", p->count}, {"sample", std::move(out)}, {"from_columns", p->from_columns}}));
  }

  void PutScoring(WorkspaceId ws, Request& req, Reply reply) {
    auto def = segment::ParseScoring(req.body, SourceOf(req));
    if (!def) return reply(ErrorResponse(def.error()));
    Status s = ctx_.engine->PutScoring(ws, std::move(*def));
    if (!s.ok()) return reply(ErrorResponse(s));
    reply(JsonResponse(json::parse(segment::ToJson(ctx_.engine->GetScoring(ws)))));
  }

  void GetScoring(WorkspaceId ws, Request&, Reply reply) {
    reply(JsonResponse(json::parse(segment::ToJson(ctx_.engine->GetScoring(ws)))));
  }

  void PutStages(WorkspaceId ws, Request& req, Reply reply) {
    auto def = segment::ParseStages(req.body, SourceOf(req));
    if (!def) return reply(ErrorResponse(def.error()));
    Status s = ctx_.engine->PutStages(ws, std::move(*def));
    if (!s.ok()) return reply(ErrorResponse(s));
    reply(JsonResponse(json::parse(segment::ToJson(ctx_.engine->GetStages(ws)))));
  }

  void GetStages(WorkspaceId ws, Request&, Reply reply) {
    json out = json::parse(segment::ToJson(ctx_.engine->GetStages(ws)));
    json counts = json::array();
    for (const auto& [name, n] : ctx_.engine->StageCounts(ws))
      counts.push_back(json{{"name", name}, {"contacts", n}});
    out["counts"] = std::move(counts);
    reply(JsonResponse(out));
  }

 private:
  ApiContext& ctx_;
};

}  // namespace

void AddSegmentRoutes(Router& router, ApiContext& ctx) {
  auto api = std::make_shared<SegmentApi>(ctx);
  auto bind = [api, &ctx](void (SegmentApi::*m)(WorkspaceId, Request&, Reply)) {
    return AdminRoute(api, ctx, m);
  };
  router.Add("GET", "/api/v1/segments", bind(&SegmentApi::List))
      .Add("POST", "/api/v1/segments/preview", bind(&SegmentApi::Preview))
      .Add("PUT", "/api/v1/segments/{id}", bind(&SegmentApi::Put))
      .Add("GET", "/api/v1/segments/{id}", bind(&SegmentApi::Get))
      .Add("DELETE", "/api/v1/segments/{id}", bind(&SegmentApi::Delete))
      .Add("GET", "/api/v1/segments/{id}/members", bind(&SegmentApi::Members))
      .Add("PUT", "/api/v1/scoring", bind(&SegmentApi::PutScoring))
      .Add("GET", "/api/v1/scoring", bind(&SegmentApi::GetScoring))
      .Add("PUT", "/api/v1/stages", bind(&SegmentApi::PutStages))
      .Add("GET", "/api/v1/stages", bind(&SegmentApi::GetStages));
}

}  // namespace nudge::http
