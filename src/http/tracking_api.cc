// POST /v1/{identify,track,page,screen,group,alias,batch}: Segment's HTTP Tracking API.
// A 200 is sent only once the request is committed to the inbox (ingest::Pipeline), from
// which it is applied to contacts in order; nothing acknowledged is lost.
#include <memory>

#include "http/api.h"
#include "http/respond.h"
#include "ingest/gzip.h"

namespace nudge::http {
namespace {

class TrackingApi {
 public:
  explicit TrackingApi(ApiContext& ctx) : ctx_(ctx) {
    auto& m = ctx.metrics;
    const char* help = "Tracking requests refused, by reason (a refused batch counts once).";
    invalid_ = &m.GetCounter("nudge_events_rejected_total", help, "{reason=\"invalid\"}");
    too_large_ = &m.GetCounter("nudge_events_rejected_total", help, "{reason=\"too_large\"}");
    bad_gzip_ = &m.GetCounter("nudge_events_rejected_total", help, "{reason=\"bad_gzip\"}");
    unauthorized_ = &m.GetCounter("nudge_events_rejected_total", help, "{reason=\"unauthorized\"}");
    unavailable_ = &m.GetCounter("nudge_events_rejected_total", help, "{reason=\"unavailable\"}");
    latency_ = &m.GetHistogram(
        "nudge_ingest_ack_seconds",
        "From a tracking request's arrival to its durable acknowledgement (inbox commit).",
        {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1});
  }

  void CountTooLarge() { too_large_->Add(); }

  void Handle(ingest::Endpoint endpoint, Request& req, Reply reply) {
    const size_t max = ingest::MaxBodyBytes(endpoint, ctx_.limits);
    std::string decompressed;
    std::string_view body = req.body;
    // The bytes decide, not the headers: SDKs label gzip as they please, and a body labelled
    // gzip that is not is read as it is.
    if (ingest::LooksGzipped(body)) {
      auto inflated = ingest::Gunzip(body, max);
      if (!inflated) {
        (inflated.error().code() == Code::kTooLarge ? too_large_ : bad_gzip_)->Add();
        return reply(ErrorResponse(inflated.error()));
      }
      decompressed = std::move(*inflated);
      body = decompressed;
    }
    if (body.size() > max) {
      too_large_->Add();
      return reply(ErrorResponse(
          Status(Code::kTooLarge, "the body exceeds " + std::to_string(max) + " bytes", "body")));
    }

    std::optional<store::WorkspaceId> ws;
    const auto basic = BasicUser(req);
    if (basic) {
      ws = ctx_.workspaces.ByWriteKey(*basic);
      if (!ws) return Unauthorized(reply, /*given=*/true);
    }

    // Checked here, built into messages when applied (from the body stored in the inbox).
    auto checked = ingest::CheckRequest(endpoint, body, ctx_.limits);
    if (!checked) {
      (checked.error().code() == Code::kTooLarge ? too_large_ : invalid_)->Add();
      return reply(ErrorResponse(checked.error()));
    }
    if (!ws && checked->write_key) ws = ctx_.workspaces.ByWriteKey(*checked->write_key);
    if (!ws) return Unauthorized(reply, checked->write_key.has_value());

    if (checked->messages == 0) return reply(Ok());
    const size_t n = checked->messages;
    std::string raw = decompressed.empty() ? std::move(req.body) : std::move(decompressed);
    const int64_t started = core::MonotonicMicros();
    ctx_.pipeline->Accept(
        *ws, endpoint, req.received_at, std::move(raw), n,
        [this, n, started, reply = std::move(reply)](Status status) {
          if (!status.ok()) {
            unavailable_->Add(n);
            return reply(ErrorResponse(status));
          }
          latency_->Observe(static_cast<double>(core::MonotonicMicros() - started) / 1e6);
          reply(Ok());
        });
  }

 private:
  static Response Ok() {
    Response r;
    r.body = R"({"success":true})";
    return r;
  }

  // given: a key came and no workspace has it (else none came).
  void Unauthorized(Reply& reply, bool given) {
    unauthorized_->Add();
    reply(ErrorResponse(Status(Code::kUnauthenticated,
                               given ? "unknown write key (the Basic auth user name, or "
                                       "\"writeKey\" in the body, is no workspace's write key)"
                                     : "a write key is required (Basic auth user name, or "
                                       "\"writeKey\" in the body)")));
  }

  ApiContext& ctx_;
  core::Counter* invalid_;
  core::Counter* too_large_;
  core::Counter* bad_gzip_;
  core::Counter* unauthorized_;
  core::Counter* unavailable_;
  core::Histogram* latency_;
};

}  // namespace

void AddTrackingRoutes(Router& router, ApiContext& ctx) {
  auto api = std::make_shared<TrackingApi>(ctx);
  for (const char* path : {"/v1/identify", "/v1/track", "/v1/page", "/v1/screen", "/v1/group",
                           "/v1/alias", "/v1/batch", "/v1/import"}) {
    const auto endpoint = *ingest::EndpointFromPath(path);
    router.Add(
        "POST", path,
        [api, endpoint](Request& req, Reply reply) {
          api->Handle(endpoint, req, std::move(reply));
        },
        ingest::MaxBodyBytes(endpoint, ctx.limits), [api] { api->CountTooLarge(); });
  }
}

}  // namespace nudge::http
