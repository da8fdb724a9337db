// /healthz and /metrics, for operators and their scrapers. Unauthenticated: they expose
// only aggregate counters, never contact data.
#include <nlohmann/json.hpp>

#include "http/api.h"
#include "http/respond.h"

namespace nudge::http {

void AddOpsRoutes(Router& router, ApiContext& ctx) {
  router.Add("GET", "/healthz", [&ctx](Request&, Reply reply) {
    // A read proves the database answers; the writer's queue depth says whether it keeps up.
    Status s = ctx.store.Read([](store::ReadTxn& t) -> Status {
      NUDGE_ASSIGN_OR_RETURN(auto all, t.ListWorkspaces());
      (void)all;
      return Status::Ok();
    });
    const auto stats = ctx.store.Stats();
    nlohmann::json body{{"status", s.ok() ? "ok" : "unavailable"},
                        {"store_queue", stats.queued_writes}};
    if (!s.ok()) body["error"] = s.ToString();
    // Acknowledged requests that keep failing to apply (a full disk, a damaged database): they
    // wait in the inbox, nothing is lost, but nothing reacts either. Unhealthy once stalled.
    bool healthy = s.ok();
    if (ctx.pipeline) {
      body["ingest_backlog"] = ctx.pipeline->BacklogEvents();
      if (auto failing = ctx.pipeline->FailingNow(); failing && failing->stalled) {
        healthy = false;
        body["status"] = "failing";
        body["error"] = "acknowledged events have not applied for " +
                        std::to_string(static_cast<int>(failing->seconds)) +
                        " s (they wait in the inbox): " + failing->error;
      }
    }
    reply(JsonResponse(body, healthy ? 200 : 503));
  });
  router.Add("GET", "/metrics", [&ctx](Request&, Reply reply) {
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = ctx.metrics.RenderPrometheus();
    reply(std::move(r));
  });
}

}  // namespace nudge::http
