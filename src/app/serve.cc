#include "app/serve.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <filesystem>

#include "core/metrics.h"
#include "http/api.h"
#include "http/server.h"
#include "journey/engine.h"
#include "profile/applier.h"
#include "profile/contact_cache.h"
#include "segment/engine.h"
#include "store/store.h"
#include "store/workspaces.h"

namespace nudge::app {

int RunServe(const Flags& flags) {
  // Block the shutdown signals before any thread starts, so that only sigwait() below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto config = LoadConfig(flags, NudgeEnvironment());
  if (!config) {
    std::fprintf(stderr, "nudge: configuration: %s\n", config.error().ToString().c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(config->log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  std::error_code ec;
  std::filesystem::create_directories(config->data, ec);
  if (ec) {
    spdlog::error("cannot create the data directory {}: {}", config->data, ec.message());
    return 1;
  }

  core::SystemClock clock;
  core::MetricsRegistry metrics;
  const std::string db_path = (std::filesystem::path(config->data) / "nudge.db").string();
  auto store = store::OpenSqliteStore({.path = db_path, .metrics = &metrics});
  if (!store) {
    spdlog::error("cannot open {}: {}", db_path, store.error().ToString());
    return 1;
  }

  store::WorkspaceRegistry workspaces(**store, clock);
  auto created = workspaces.Bootstrap(config->write_key, config->admin_key);
  if (!created) {
    spdlog::error("cannot set up the default workspace: {}", created.error().ToString());
    return 1;
  }
  if (*created) {
    std::printf(
        "Created workspace 'default'. Keep these keys; they are shown only now.\n"
        "  write key (SDKs, /v1/*):            %s\n"
        "  admin key (admin API, nudge CLI):   %s\n",
        (*created)->write_key.c_str(), (*created)->admin_key.c_str());
    std::fflush(stdout);
  }

  // Contacts' traits and behaviour in memory, and the segments, scores and stages kept on them.
  profile::ContactCache cache;
  segment::Engine engine(**store, cache, clock, &metrics);
  if (Status s = engine.Load(); !s.ok()) {
    spdlog::error("cannot load contacts and segments: {}", s.ToString());
    (*store)->Close();
    return 1;
  }
  metrics.AddGauge("nudge_contacts_in_memory", "Contacts held in memory.", "",
                   [&cache] { return static_cast<double>(cache.size()); });
  // Journeys run downstream of segments: they see segment and stage changes as events.
  journey::Engine journeys(**store, engine, cache, clock, &metrics);
  engine.SetDownstream(&journeys);
  if (Status s = journeys.Load(); !s.ok()) {
    spdlog::error("cannot load journeys: {}", s.ToString());
    engine.Stop();
    (*store)->Close();
    return 1;
  }

  profile::Applier applier(profile::ProfileOptions{config->default_region}, &engine);
  http::ApiContext ctx{**store, workspaces,
                       applier, metrics,
                       clock,   {config->max_message_bytes, config->max_batch_bytes, 1024},
                       &engine, &journeys};
  http::Router router;
  http::AddTrackingRoutes(router, ctx);
  http::AddAdminRoutes(router, ctx);
  http::AddSegmentRoutes(router, ctx);
  http::AddJourneyRoutes(router, ctx);
  http::AddOpsRoutes(router, ctx);
  http::Server server({config->listen, config->http_threads, 60}, std::move(router), clock,
                      &metrics);
  if (Status s = server.Start(); !s.ok()) {
    spdlog::error("{}", s.ToString());
    journeys.Stop();
    engine.Stop();
    (*store)->Close();
    return 1;
  }
  auto hp = http::ParseListen(config->listen);
  spdlog::info("nudge listening on http://{}:{} (data in {})", hp ? hp->first : "?", server.port(),
               config->data);
  std::printf("nudge listening on http://%s:%u\n", hp ? hp->first.c_str() : "?", server.port());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{}: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
  server.Quiesce();
  server.Stop(10000);
  journeys.Stop();
  engine.Stop();
  (*store)->Close();
  spdlog::info("stopped; every acknowledged event is committed");
  return 0;
}

}  // namespace nudge::app
