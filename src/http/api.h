// The routes nudge serves: the Segment-compatible tracking API (/v1/...), the admin API
// (/api/v1/..., described in docs/openapi.yaml) and operations (/healthz, /metrics).
//
// ApiContext borrows the services the handlers use; it must outlive the Server.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>

#include "channel/channels_config.h"
#include "channel/delivery.h"
#include "content/image_library.h"
#include "content/library.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "http/respond.h"
#include "http/server.h"
#include "ingest/parser.h"
#include "ingest/pipeline.h"
#include "journey/engine.h"
#include "profile/applier.h"
#include "segment/engine.h"
#include "store/store.h"
#include "store/workspaces.h"
#include "track/links.h"

namespace nudge::http {

struct ApiContext {
  store::Store& store;
  store::WorkspaceRegistry& workspaces;
  const profile::Applier& applier;
  core::MetricsRegistry& metrics;
  const core::Clock& clock;
  ingest::Limits limits;
  segment::Engine* engine = nullptr;    // segments, scores, stages; may be null (tests)
  journey::Engine* journeys = nullptr;  // may be null (tests)
  content::TemplateLibrary* templates = nullptr;
  channel::Dispatcher* delivery = nullptr;
  content::ImageLibrary* images = nullptr;  // image templates and the /i/ route
  // Set by AddPublicRoutes: applies an unsubscribe mailed to delivery.unsubscribe_mailbox
  // (subject "unsubscribe <token>"); `from` is the sender, which is not recorded.
  std::function<Status(std::string_view subject, const std::string& from)> mail_unsubscribe{};
  track::SecretBook* secrets = nullptr;
  const channel::ChannelsConfig* channels = nullptr;
  std::string public_url = "http://127.0.0.1:8080";
  // Where tracking requests go (the inbox, then the store); admin reads wait on it. Needed by
  // AddTrackingRoutes.
  ingest::Pipeline* pipeline = nullptr;
};

// Finds a contact by the key in a URL: its user id, else an anonymous id, else (with '@') its
// email, else (starting with '+') its phone.
Result<std::optional<store::Contact>> FindContactByKey(store::ReadTxn& t, store::WorkspaceId ws,
                                                       const std::string& key);

// The workspace whose admin key the request carries (Authorization: Bearer <admin key>); when
// there is none, answers 401 through `reply` and returns nullopt.
std::optional<store::WorkspaceId> AdminWorkspace(const store::WorkspaceRegistry& workspaces,
                                                 const Request& req, Reply& reply);

// The `limit` query parameter of a page: `fallback` when absent, a 400 unless a whole number
// from 1 to 1000.
Result<int> PageLimit(const Request& req, int fallback);
// The `cursor` query parameter of a page ordered by id: the id the page continues from (0 when
// absent), a 400 unless it is a cursor this API gave out (an id, base64url-encoded).
Result<int64_t> IdCursor(const Request& req);

// Warnings for the topics a definition names (subscribed(topic "..."), a template's `topic:`)
// that the workspace's policies do not list: such a topic has no choice anyone can record, so
// `subscribed(topic "newz")` is true for everyone subscribed to email. A warning, not an error,
// since `nudge apply` may publish the policies after what names them.
std::vector<std::string> UnknownTopicWarnings(const ApiContext& ctx, store::WorkspaceId ws,
                                              const std::vector<std::string>& topics);

// How deep arrays and objects may nest in an admin API body (traits, a preview's context, ...).
inline constexpr int kMaxJsonNesting = 64;

// The request's body as a JSON object (`{}` for an empty body when empty_is_object): a 400
// saying where malformed JSON breaks ("request body:1:18"), where it nests deeper than
// kMaxJsonNesting, or what the body is instead.
Result<nlohmann::json> JsonObjectBody(std::string_view text, bool empty_is_object = false);
// What a whole channel's unsubscribe does to the suppression list, wherever it is made (a link,
// the preference page, the API): unsubscribing puts the contact's address for the channel on
// it (reason unsubscribed; a bounce, complaint or manual entry already there stays), and
// subscribing again removes an entry whose reason is unsubscribed. `detail` says where the
// unsubscribe came from. Nothing happens for a contact without an address for the channel
// (push has none).
Status SuppressUnsubscribed(ApiContext& ctx, store::WorkspaceId ws, store::ContactId contact,
                            const std::string& channel, const std::string& detail);
Status LiftUnsubscribeSuppression(ApiContext& ctx, store::WorkspaceId ws, store::ContactId contact,
                                  const std::string& channel);

// A 400 naming the first field of `body` not in `known` (a misspelled "reasn" would otherwise
// be ignored and its default used), with the known ones.
Status KnownFields(const nlohmann::json& body, std::initializer_list<std::string_view> known);

// An optional field of a JSON object body: `fallback` when it is absent or null, a 400 naming
// it (`where` + `key`) when it has another type. T: std::string, bool, int64_t or size_t.
template <typename T>
Result<T> OptionalField(const nlohmann::json& body, const std::string& key, T fallback,
                        const std::string& where = "") {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  bool ok = false;
  const char* expected = "";
  if constexpr (std::is_same_v<T, std::string>) {
    ok = it->is_string();
    expected = "must be a string";
  } else if constexpr (std::is_same_v<T, bool>) {
    ok = it->is_boolean();
    expected = "must be true or false";
  } else if constexpr (std::is_unsigned_v<T>) {
    ok = it->is_number_unsigned();
    expected = "must be a whole number from 0";
  } else {
    static_assert(std::is_same_v<T, int64_t>);
    ok = it->is_number_integer();
    expected = "must be a whole number";
  }
  if (!ok) return Err(Status::Invalid(expected, where + key));
  return it->get<T>();
}

// An admin route: `method` of `api` runs with the workspace of the request's admin key, once
// every tracking request acknowledged before it has been applied (so that what a client was
// told is stored, it reads back).
template <class Api>
Handler AdminRoute(const std::shared_ptr<Api>& api, const ApiContext& ctx,
                   void (Api::*method)(store::WorkspaceId, Request&, Reply)) {
  return [api, &ctx, method](Request& req, Reply reply) {
    auto ws = AdminWorkspace(ctx.workspaces, req, reply);
    if (!ws) return;
    if (!ctx.pipeline) return ((*api).*method)(*ws, req, std::move(reply));
    // `req` lives in its connection, which `reply` keeps alive until it is called.
    ctx.pipeline->AfterApplied([api, method, ws = *ws, &req, reply]() mutable {
      try {
        ((*api).*method)(ws, req, reply);
      } catch (const std::exception& e) {
        reply(ErrorResponse(Status::Internal(std::string("the request failed: ") + e.what())));
      }
    });
  };
}

void AddTrackingRoutes(Router& router, ApiContext& ctx);
void AddAdminRoutes(Router& router, ApiContext& ctx);
void AddOpsRoutes(Router& router, ApiContext& ctx);
// /api/v1/segments, /api/v1/scoring, /api/v1/stages (needs ctx.engine).
void AddSegmentRoutes(Router& router, ApiContext& ctx);
// /api/v1/journeys, /api/v1/messages, /api/v1/policies (needs ctx.journeys).
void AddJourneyRoutes(Router& router, ApiContext& ctx);
// /api/v1/templates, /api/v1/contacts/{id}/consent and /subscriptions, /api/v1/suppressions
// (needs ctx.templates, ctx.delivery, ctx.engine, ctx.journeys).
void AddDeliveryRoutes(Router& router, ApiContext& ctx);
// What recipients reach without a key: /t/... (open pixel, click redirects, unsubscribe,
// preferences, confirmation, view in browser) on signed tokens, and the provider callbacks
// /hooks/... (bounces and complaints from SES, SendGrid, Postmark; inbound SMS).
void AddPublicRoutes(Router& router, ApiContext& ctx);

}  // namespace nudge::http
