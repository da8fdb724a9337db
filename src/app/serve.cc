#include "app/serve.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "channel/channel.h"
#include "channel/delivery.h"
#include "channel/email/email_channel.h"
#include "channel/feedback/maildir.h"
#include "channel/feedback/mime.h"
#include "channel/feedback/smtp_listener.h"
#include "channel/feedback_processor.h"
#include "channel/sms/sms.h"
#include "channel/webhook/webhook.h"
#include "content/library.h"
#include "core/huge_pages.h"
#include "core/metrics.h"
#include "http/api.h"
#include "http/server.h"
#include "ingest/pipeline.h"
#include "journey/engine.h"
#include "profile/applier.h"
#include "profile/contact_cache.h"
#include "segment/engine.h"
#include "store/inbox.h"
#include "store/store.h"
#include "store/workspaces.h"
#include "track/links.h"

namespace nudge::app {
namespace {

// A port free on host right now (0 when none could be found).
uint16_t FreePort(const std::string& host) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (host.empty() || ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

}  // namespace

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

  // One server per data directory: a second one would keep its own state beside the first's
  // and lose what it acknowledged. The lock goes with the process (kill -9 included).
  const std::string lock_path = (std::filesystem::path(config->data) / "nudge.lock").string();
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) {
    spdlog::error("cannot open {}: {}", lock_path, std::strerror(errno));
    return 1;
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    char held[32] = "";
    const ssize_t n = ::pread(lock_fd, held, sizeof held - 1, 0);
    std::string pid(held, n > 0 ? static_cast<size_t>(n) : 0);
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    spdlog::error("another nudge serve{} is using the data directory {}; stop it first",
                  pid.empty() ? "" : " (pid " + pid + ")", config->data);
    return 1;
  }
  const std::string own_pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd, 0) != 0 ||
      ::pwrite(lock_fd, own_pid.data(), own_pid.size(), 0) != static_cast<ssize_t>(own_pid.size()))
    spdlog::warn("cannot write the pid into {}", lock_path);

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
  metrics.AddGauge("nudge_huge_pages_requested",
                   "1 when the heap was asked for transparent huge pages (NUDGE_HUGE_PAGES).", "",
                   [] { return core::HugePagesRequested() ? 1.0 : 0.0; });
  metrics.AddGauge("nudge_anon_huge_page_bytes",
                   "Memory the kernel backs with transparent huge pages now.", "",
                   [] { return static_cast<double>(core::AnonHugePageBytes()); });
  // Message templates (journeys ask which are transactional), the channels and the delivery
  // pipeline that sends what journeys queue.
  content::TemplateLibrary templates(**store, clock);
  if (Status s = templates.Load(); !s.ok()) {
    spdlog::error("cannot load templates: {}", s.ToString());
    engine.Stop();
    (*store)->Close();
    return 1;
  }
  // Journeys run downstream of segments: they see segment and stage changes as events.
  journey::EngineOptions journey_options;
  journey_options.transactional = [&templates](store::WorkspaceId ws, const std::string& id) {
    auto info = templates.Get(ws, id);
    return info && info->tmpl->transactional;
  };
  journey::Engine journeys(**store, engine, cache, clock, &metrics, journey_options);
  engine.SetDownstream(&journeys);
  if (Status s = journeys.Load(); !s.ok()) {
    spdlog::error("cannot load journeys: {}", s.ToString());
    engine.Stop();
    (*store)->Close();
    return 1;
  }
  // Image templates: their assets are written under DATA/images/ (remade from the store).
  content::ImageLibrary images(**store, std::filesystem::path(config->data) / "images", clock);
  if (Status s = images.Load(); !s.ok()) {
    spdlog::error("cannot load image templates: {}", s.ToString());
    journeys.Stop();
    engine.Stop();
    (*store)->Close();
    return 1;
  }
  track::SecretBook secrets(**store);
  channel::ChannelRegistry channels;
  if (config->channels.email) {
    auto email = channel::EmailChannel::Create(*config->channels.email, clock, &metrics);
    if (!email) {
      spdlog::error("channels.email: {}", email.error().ToString());
      journeys.Stop();
      engine.Stop();
      (*store)->Close();
      return 1;
    }
    (void)channels.Add(std::move(*email));
  }
  if (config->channels.sms)
    (void)channels.Add(std::make_unique<channel::SmsChannel>(*config->channels.sms));
  (void)channels.Add(std::make_unique<channel::WebhookChannel>(config->channels.webhook));

  // With port 0 a free port is chosen now, so that the public URL (in every link of every
  // message) names the port actually served.
  std::string listen = config->listen;
  std::string public_url = config->public_url;
  if (auto lp = http::ParseListen(listen); lp && lp->second == 0) {
    const uint16_t port = FreePort(lp->first);
    if (port != 0) {
      const std::string host = listen.substr(0, listen.rfind(':'));
      listen = host + ":" + std::to_string(port);
      if (public_url.size() > 2 && public_url.compare(public_url.size() - 2, 2, ":0") == 0)
        public_url = public_url.substr(0, public_url.size() - 1) + std::to_string(port);
    }
  }
  channel::DeliveryOptions delivery_options = config->delivery;
  delivery_options.public_url = public_url;
  channel::Dispatcher dispatcher(
      {**store, engine, journeys, templates, secrets, channels, clock, &metrics}, delivery_options);
  journeys.SetOutboxListener([&dispatcher] { dispatcher.Notify(); });
  if (config->delivery_hold) {
    spdlog::warn("delivery is on hold (delivery.hold): messages stay queued, nothing is sent");
  } else if (Status s = dispatcher.Start(); !s.ok()) {
    spdlog::error("cannot start delivery: {}", s.ToString());
    journeys.Stop();
    engine.Stop();
    (*store)->Close();
    return 1;
  }

  profile::Applier applier(profile::ProfileOptions{config->default_region}, &engine);
  const ingest::Limits limits{config->max_message_bytes, config->max_batch_bytes, 1024};

  // Tracking requests are acknowledged once they are in the inbox (DATA/inbox/), then
  // applied to the store in order; what a crash left unapplied is applied now. An earlier
  // version's inbox (DATA/inbox.db) is moved into it.
  const std::string inbox_path = (std::filesystem::path(config->data) / "inbox").string();
  const std::string legacy_inbox = (std::filesystem::path(config->data) / "inbox.db").string();
  std::unique_ptr<store::Inbox> inbox;
  std::optional<ingest::Pipeline> pipeline;
  const Status ingest_started = [&]() -> Status {
    NUDGE_ASSIGN_OR_RETURN(const int64_t applied, (*store)->ReadMark(store::kInboxAppliedMark));
    NUDGE_ASSIGN_OR_RETURN(inbox, store::Inbox::Open({.path = inbox_path,
                                                      .legacy_path = legacy_inbox,
                                                      .applied = applied,
                                                      .metrics = &metrics}));
    pipeline.emplace(**store, *inbox, applier, metrics,
                     ingest::PipelineOptions{.max_backlog_events = config->max_backlog_events,
                                             .max_backlog_bytes = config->max_backlog_bytes,
                                             .limits = limits});
    NUDGE_TRY(pipeline->Start());
    return Status::Ok();
  }();
  if (!ingest_started.ok()) {
    spdlog::error("cannot start ingest from the inbox {}: {}", inbox_path,
                  ingest_started.ToString());
    pipeline.reset();
    if (inbox) inbox->Close();
    dispatcher.Stop(0);
    journeys.Stop();
    engine.Stop();
    (*store)->Close();
    return 1;
  }
  http::ApiContext ctx{**store, workspaces, applier, metrics, clock, limits, &engine, &journeys};
  ctx.templates = &templates;
  ctx.images = &images;
  ctx.delivery = &dispatcher;
  ctx.secrets = &secrets;
  ctx.channels = &config->channels;
  ctx.public_url = public_url;
  ctx.pipeline = &*pipeline;
  http::Router router;
  http::AddTrackingRoutes(router, ctx);
  http::AddAdminRoutes(router, ctx);
  http::AddSegmentRoutes(router, ctx);
  http::AddJourneyRoutes(router, ctx);
  http::AddDeliveryRoutes(router, ctx);
  http::AddPublicRoutes(router, ctx);
  http::AddOpsRoutes(router, ctx);
  http::Server server({listen, config->http_threads, 60}, std::move(router), clock, &metrics);
  if (Status s = server.Start(); !s.ok()) {
    spdlog::error("{}", s.ToString());
    dispatcher.Stop(0);
    journeys.Stop();
    engine.Stop();
    (*store)->Close();
    return 1;
  }
  auto hp = http::ParseListen(listen);

  // Bounces and complaints by mail.
  channel::FeedbackProcessor feedback(**store, engine, clock, &metrics);
  auto apply_feedback = [&feedback](const std::vector<channel::Feedback>& reports) -> Status {
    for (const auto& f : reports) {
      auto r = feedback.Apply(f);
      if (!r) return r.error();
      spdlog::info("feedback: {}", r->detail);
    }
    return Status::Ok();
  };
  // A mail to delivery.unsubscribe_mailbox (subject "unsubscribe <token>"), by SMTP or from the
  // maildir: true when it was one (applied or refused, and logged).
  auto mail_unsubscribe = [&ctx](const std::string& data, const std::string& from) -> bool {
    std::vector<channel::MimeField> header;
    channel::ParseMimeFields(data, header, 64);
    const std::string subject = channel::DecodeHeaderWords(channel::FindField(header, "subject"));
    if (subject.size() <= 12 || strncasecmp(subject.c_str(), "unsubscribe ", 12) != 0 ||
        !ctx.mail_unsubscribe)
      return false;
    const std::string sender =
        from.empty() ? std::string(channel::FindField(header, "from")) : from;
    Status s = ctx.mail_unsubscribe(subject, sender);
    if (s.ok()) {
      spdlog::info("feedback: unsubscribed by mail from <{}>", sender);
    } else {
      spdlog::info("feedback: an unsubscribe mail from <{}> was refused: {}", sender, s.ToString());
    }
    return true;
  };
  std::unique_ptr<channel::SmtpListener> listener;
  if (!config->feedback_listen.empty()) {
    auto lp = http::ParseListen(config->feedback_listen);
    if (!lp) {
      spdlog::error("feedback.listen: {}", lp.error().ToString());
      return 1;
    }
    channel::SmtpListenerOptions lo;
    lo.address = lp->first.empty() ? "0.0.0.0" : lp->first;
    lo.port = lp->second;
    listener = std::make_unique<channel::SmtpListener>(
        lo,
        [&apply_feedback, &mail_unsubscribe](
            const channel::InboundMessage& m,
            const Result<std::vector<channel::Feedback>>& parsed) -> Status {
          if (!parsed) {
            // An unsubscribe sent to the List-Unsubscribe mailto address.
            if (mail_unsubscribe(m.data, m.mail_from)) return Status::Ok();
            spdlog::info("feedback: a message from <{}> is not a report: {}", m.mail_from,
                         parsed.error().ToString());
            return Status::Ok();
          }
          return apply_feedback(*parsed);
        });
    if (Status s = listener->Start(); !s.ok()) {
      spdlog::error("feedback.listen {}: {}", config->feedback_listen, s.ToString());
      return 1;
    }
    spdlog::info("feedback: receiving bounces by SMTP on {}:{}", lo.address, listener->port());
  }
  std::atomic<bool> stop_maildir{false};
  std::thread maildir_thread;
  if (!config->feedback_maildir.empty()) {
    maildir_thread = std::thread([&] {
      pthread_setname_np(pthread_self(), "maildir");
      channel::MaildirReader reader(config->feedback_maildir);
      while (!stop_maildir.load()) {
        auto stats = reader.Poll(
            [&](const std::string& file, const auto& reports) { return apply_feedback(reports); },
            [&](const std::string& file, const std::string& message) {
              return mail_unsubscribe(message, "");
            });
        if (!stats) spdlog::warn("feedback.maildir: {}", stats.error().ToString());
        for (int i = 0; i < config->feedback_poll / 50 && !stop_maildir.load(); ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }

  spdlog::info("nudge listening on http://{}:{} (data in {}; links on {})", hp ? hp->first : "?",
               server.port(), config->data, public_url);
  std::printf("nudge listening on http://%s:%u\n", hp ? hp->first.c_str() : "?", server.port());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{}: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
  server.Quiesce();
  server.Stop(10000);
  // Apply what was acknowledged; what a slow disk leaves after 30 s waits in the inbox.
  pipeline->Stop(30000);
  if (listener) listener->Stop();
  stop_maildir = true;
  if (maildir_thread.joinable()) maildir_thread.join();
  journeys.Stop();
  // Messages being sent get up to 10 s for their answers; what stays unanswered is sent again
  // (same Message-ID) on the next start.
  dispatcher.Stop(10000);
  channels.ShutdownAll(2000);
  engine.Stop();
  (*store)->Close();
  inbox->Close();
  if (const size_t left = pipeline->BacklogEvents(); left > 0) {
    spdlog::warn(
        "stopped; {} acknowledged events are not applied yet and wait in the inbox for "
        "the next start",
        left);
  } else {
    spdlog::info("stopped; every acknowledged event is committed");
  }
  return 0;
}

}  // namespace nudge::app
