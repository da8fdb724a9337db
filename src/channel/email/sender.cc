#include "channel/email/sender.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "channel/email/message.h"
#include "channel/email/retry.h"

namespace nudge::channel {

std::string_view LaneName(Lane lane) {
  return lane == Lane::kTransactional ? "transactional" : "bulk";
}

namespace {

constexpr int kLanes = 2;
int LaneIndex(Lane lane) { return lane == Lane::kTransactional ? 0 : 1; }

int64_t NowMicros() { return core::MonotonicMicros(); }

struct Domain;

struct Item {
  std::string from;
  std::string recipient;
  std::string message;
  Lane lane = Lane::kBulk;
  SendCallback callback;
  int attempts = 0;  // attempts started
  int64_t submitted_us = 0;
  Domain* domain = nullptr;
};

struct Domain {
  std::string name;
  int in_flight = 0;
  std::deque<std::unique_ptr<Item>> pending[kLanes];
  bool listed[kLanes] = {false, false};  // in Impl::ready_[lane]
};

// Values read by metric gauges at scrape time; shared so a scrape after the sender is gone
// reads the last values instead of freed memory.
struct GaugeValues {
  std::atomic<int64_t> queued{0};
  std::atomic<int64_t> in_flight{0};
  std::unique_ptr<std::atomic<int64_t>[]> open;  // per relay
};

struct RelayState {
  RelayConfig config;
  std::shared_ptr<const TlsClientContext> tls;
  int reserved = 0;
  RateLimiter limiter;
  // Health: 0 consecutive failures = healthy. When down, no one connects before down_until_us;
  // after it, one worker probes.
  int consecutive_failures = 0;
  int64_t down_until_us = 0;
  bool probing = false;
  std::string last_error;
  std::condition_variable cv_general;   // workers taking both lanes
  std::condition_variable cv_reserved;  // workers taking transactional mail only
  RelayStats stats;
  core::Counter* sent_total = nullptr;
  core::Counter* temporary_total = nullptr;
  core::Counter* permanent_total = nullptr;
  core::Counter* connections_total = nullptr;
  core::Counter* connect_failures_total = nullptr;
};

}  // namespace

class EmailSender::Impl {
 public:
  explicit Impl(SenderOptions options) : options_(std::move(options)) {}

  Status Init();
  Status Submit(std::string from, std::string recipient, std::string message, Lane lane,
                SendCallback callback);
  void Shutdown(core::Millis drain_timeout);
  size_t QueueDepth() const {
    std::lock_guard lock(mu_);
    return queued_;
  }
  SenderStats Stats() const;

 private:
  struct Finished {
    std::unique_ptr<Item> item;
    SendOutcome outcome;
  };

  void WorkerLoop(size_t relay, bool reserved, int index);
  std::unique_ptr<Item> TryTake(size_t relay, bool reserved, int64_t now, int64_t* wake_at,
                                bool* probe);
  Domain* PeekReady(int lane);
  void Enlist(Domain* d, int lane, bool front);
  bool RelayMayTake(size_t r, int64_t now) const;
  bool AllDown(int64_t now) const;
  void Wake(int lane);
  void WakeAll();
  void ReleaseSlot(Item& item);
  void Requeue(std::unique_ptr<Item> item);
  void MaybeForgetDomain(Domain* d);
  std::vector<std::unique_ptr<Item>> DrainQueue();
  void Deliver(std::vector<Finished>& done);
  void Count(RelayState& rs, const SendOutcome& o, int64_t submitted_us);
  void UpdateGauges() {
    gauges_->queued.store(static_cast<int64_t>(queued_), std::memory_order_relaxed);
    gauges_->in_flight.store(static_cast<int64_t>(in_flight_), std::memory_order_relaxed);
  }

  SenderOptions options_;
  std::vector<std::unique_ptr<RelayState>> relays_;
  std::shared_ptr<GaugeValues> gauges_ = std::make_shared<GaugeValues>();
  core::Histogram* latency_ = nullptr;

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<Domain>> domains_;  // GUARDED_BY(mu_)
  std::deque<Domain*> ready_[kLanes];  // domains with pending mail in a lane; GUARDED_BY(mu_)
  size_t queued_ = 0;                  // GUARDED_BY(mu_)
  size_t in_flight_ = 0;               // GUARDED_BY(mu_)
  uint64_t retried_ = 0;               // GUARDED_BY(mu_)
  bool accepting_ = true;              // GUARDED_BY(mu_)
  bool stopping_ = false;              // GUARDED_BY(mu_)
  std::condition_variable drained_;
  std::vector<std::thread> threads_;
  std::once_flag shutdown_once_;
};

Status EmailSender::Impl::Init() {
  if (options_.relays.empty()) return Status::Invalid("at least one relay is needed", "relays");
  if (options_.max_attempts < 1) options_.max_attempts = 1;
  if (options_.domain_concurrency < 0)
    return Status::Invalid("must be 0 (no limit) or more", "domain_concurrency");
  std::set<std::string> names;
  gauges_->open = std::make_unique<std::atomic<int64_t>[]>(options_.relays.size());
  for (size_t i = 0; i < options_.relays.size(); ++i) {
    const RelayConfig& rc = options_.relays[i];
    const std::string where = "relays[" + std::to_string(i) + "]";
    if (rc.name.empty()) return Status::Invalid("a relay needs a name", where + ".name");
    if (!names.insert(rc.name).second)
      return Status::Invalid("the relay name '" + rc.name + "' is used twice", where + ".name");
    if (rc.host.empty()) return Status::Invalid("a relay needs a host", where + ".host");
    if (rc.port <= 0 || rc.port > 65535)
      return Status::Invalid("expected a port from 1 to 65535", where + ".port");
    if (rc.pool < 1 || rc.pool > 64)
      return Status::Invalid("expected a pool size from 1 to 64", where + ".pool");
    if (rc.rate < 0) return Status::Invalid("expected 0 (no limit) or more", where + ".rate");
    auto rs = std::make_unique<RelayState>();
    rs->config = rc;
    rs->reserved =
        rc.transactional_reserved < 0 ? (rc.pool >= 2 ? 1 : 0) : rc.transactional_reserved;
    if (rs->reserved >= rc.pool)
      return Status::Invalid("must be smaller than the pool, so bulk mail has a connection",
                             where + ".transactional_reserved");
    rs->limiter = RateLimiter(rc.rate);
    rs->stats.name = rc.name;
    if (rc.tls != TlsMode::kNone) {
      auto tls = TlsClientContext::Create(rc.tls_verify, rc.ca_file);
      if (!tls) return tls.error().WithPrefix(where);
      rs->tls = *tls;
    }
    if (core::MetricsRegistry* m = options_.metrics) {
      std::string escaped;  // Prometheus escapes \\, " and newlines in label values
      for (char ch : rc.name) {
        if (ch == '\\' || ch == '"' || ch == '\n') escaped += '\\';
        escaped += ch == '\n' ? 'n' : ch;
      }
      const std::string relay_label = "relay=\"" + escaped + "\"";
      const char* help = "Messages handed to a relay, by outcome.";
      rs->sent_total =
          &m->GetCounter("nudge_email_sends_total", help, "{" + relay_label + ",outcome=\"sent\"}");
      rs->temporary_total = &m->GetCounter("nudge_email_sends_total", help,
                                           "{" + relay_label + ",outcome=\"temporary\"}");
      rs->permanent_total = &m->GetCounter("nudge_email_sends_total", help,
                                           "{" + relay_label + ",outcome=\"permanent\"}");
      rs->connections_total = &m->GetCounter("nudge_email_connections_opened_total",
                                             "SMTP connections opened.", "{" + relay_label + "}");
      rs->connect_failures_total =
          &m->GetCounter("nudge_email_connect_failures_total",
                         "SMTP connections that could not be set up.", "{" + relay_label + "}");
      std::shared_ptr<GaugeValues> g = gauges_;
      m->AddGauge("nudge_email_connections", "SMTP connections open now.", "{" + relay_label + "}",
                  [g, i] { return static_cast<double>(g->open[i].load()); });
    }
    relays_.push_back(std::move(rs));
  }
  if (core::MetricsRegistry* m = options_.metrics) {
    std::shared_ptr<GaugeValues> g = gauges_;
    m->AddGauge("nudge_email_queue_depth", "Messages waiting for an SMTP connection.", "",
                [g] { return static_cast<double>(g->queued.load()); });
    m->AddGauge("nudge_email_in_flight", "Messages being sent.", "",
                [g] { return static_cast<double>(g->in_flight.load()); });
    latency_ = &m->GetHistogram("nudge_email_send_seconds",
                                "From Submit to the relay's answer to the message.",
                                {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  }
  for (size_t r = 0; r < relays_.size(); ++r) {
    for (int i = 0; i < relays_[r]->config.pool; ++i) {
      const bool reserved = i < relays_[r]->reserved;
      threads_.emplace_back([this, r, reserved, i] { WorkerLoop(r, reserved, i); });
    }
  }
  return Status::Ok();
}

bool EmailSender::Impl::AllDown(int64_t now) const {
  for (const auto& rs : relays_)
    if (rs->consecutive_failures == 0 || now >= rs->down_until_us) return false;
  return true;
}

bool EmailSender::Impl::RelayMayTake(size_t r, int64_t now) const {
  for (size_t j = 0; j < r; ++j)
    if (relays_[j]->consecutive_failures == 0) return false;  // a preferred relay is healthy
  const RelayState& rs = *relays_[r];
  if (rs.consecutive_failures == 0) return true;
  return now >= rs.down_until_us && !rs.probing;
}

void EmailSender::Impl::Wake(int lane) {
  const int64_t now = NowMicros();
  for (size_t r = 0; r < relays_.size(); ++r) {
    if (!RelayMayTake(r, now)) continue;
    relays_[r]->cv_general.notify_one();
    if (lane == 0 && relays_[r]->reserved > 0) relays_[r]->cv_reserved.notify_one();
  }
}

void EmailSender::Impl::WakeAll() {
  for (auto& rs : relays_) {
    rs->cv_general.notify_all();
    rs->cv_reserved.notify_all();
  }
}

void EmailSender::Impl::Enlist(Domain* d, int lane, bool front) {
  if (d->listed[lane] || d->pending[lane].empty()) return;
  if (options_.domain_concurrency > 0 && d->in_flight >= options_.domain_concurrency) return;
  d->listed[lane] = true;
  if (front) {
    ready_[lane].push_front(d);
  } else {
    ready_[lane].push_back(d);
  }
}

Domain* EmailSender::Impl::PeekReady(int lane) {
  while (!ready_[lane].empty()) {
    Domain* d = ready_[lane].front();
    const bool saturated =
        options_.domain_concurrency > 0 && d->in_flight >= options_.domain_concurrency;
    if (!d->pending[lane].empty() && !saturated) return d;
    ready_[lane].pop_front();
    d->listed[lane] = false;
  }
  return nullptr;
}

void EmailSender::Impl::MaybeForgetDomain(Domain* d) {
  if (d->in_flight == 0 && d->pending[0].empty() && d->pending[1].empty() && !d->listed[0] &&
      !d->listed[1])
    domains_.erase(d->name);
}

std::unique_ptr<Item> EmailSender::Impl::TryTake(size_t relay, bool reserved, int64_t now,
                                                 int64_t* wake_at, bool* probe) {
  RelayState& rs = *relays_[relay];
  if (queued_ == 0) return nullptr;
  for (size_t j = 0; j < relay; ++j)
    if (relays_[j]->consecutive_failures == 0) return nullptr;
  if (rs.consecutive_failures > 0) {
    if (now < rs.down_until_us) {
      *wake_at = rs.down_until_us;
      return nullptr;
    }
    if (rs.probing) return nullptr;
  }
  Domain* d = nullptr;
  int lane = 0;
  for (; lane < (reserved ? 1 : kLanes); ++lane) {
    d = PeekReady(lane);
    if (d) break;
  }
  if (!d) return nullptr;
  if (!rs.limiter.TryAcquire(now)) {
    *wake_at = rs.limiter.NextFree(now);
    return nullptr;
  }
  ready_[lane].pop_front();
  d->listed[lane] = false;
  std::unique_ptr<Item> item = std::move(d->pending[lane].front());
  d->pending[lane].pop_front();
  ++d->in_flight;
  Enlist(d, lane, /*front=*/false);
  --queued_;
  ++in_flight_;
  ++item->attempts;
  if (rs.consecutive_failures > 0) {
    rs.probing = true;
    *probe = true;
  }
  UpdateGauges();
  return item;
}

void EmailSender::Impl::ReleaseSlot(Item& item) {
  Domain* d = item.domain;
  const bool was_saturated =
      options_.domain_concurrency > 0 && d->in_flight >= options_.domain_concurrency;
  --d->in_flight;
  --in_flight_;
  if (was_saturated) {
    for (int lane = 0; lane < kLanes; ++lane) {
      if (d->pending[lane].empty() || d->listed[lane]) continue;
      Enlist(d, lane, /*front=*/false);
      Wake(lane);
    }
  }
  UpdateGauges();
}

void EmailSender::Impl::Requeue(std::unique_ptr<Item> item) {
  Domain* d = item->domain;
  const int lane = LaneIndex(item->lane);
  ReleaseSlot(*item);
  d->pending[lane].push_front(std::move(item));
  ++queued_;
  ++retried_;
  Enlist(d, lane, /*front=*/true);
  UpdateGauges();
  Wake(lane);
}

std::vector<std::unique_ptr<Item>> EmailSender::Impl::DrainQueue() {
  std::vector<std::unique_ptr<Item>> out;
  for (auto it = domains_.begin(); it != domains_.end();) {
    Domain* d = it->second.get();
    for (int lane = 0; lane < kLanes; ++lane) {
      for (auto& item : d->pending[lane]) out.push_back(std::move(item));
      d->pending[lane].clear();
      d->listed[lane] = false;
    }
    if (d->in_flight == 0) {
      it = domains_.erase(it);
    } else {
      ++it;
    }
  }
  ready_[0].clear();
  ready_[1].clear();
  queued_ = 0;
  UpdateGauges();
  return out;
}

void EmailSender::Impl::Count(RelayState& rs, const SendOutcome& o, int64_t submitted_us) {
  switch (o.status) {
    case SendStatus::kSent:
      ++rs.stats.sent;
      if (rs.sent_total) rs.sent_total->Add();
      break;
    case SendStatus::kTemporaryFailure:
      ++rs.stats.temporary;
      if (rs.temporary_total) rs.temporary_total->Add();
      break;
    case SendStatus::kPermanentFailure:
      ++rs.stats.permanent;
      if (rs.permanent_total) rs.permanent_total->Add();
      break;
  }
  if (latency_) latency_->Observe(static_cast<double>(NowMicros() - submitted_us) / 1e6);
}

void EmailSender::Impl::Deliver(std::vector<Finished>& done) {
  for (Finished& f : done)
    if (f.item->callback) f.item->callback(f.outcome);
  done.clear();
}

Status EmailSender::Impl::Submit(std::string from, std::string recipient, std::string message,
                                 Lane lane, SendCallback callback) {
  if (!from.empty()) {
    if (Status s = CheckAddress(from); !s.ok())
      return Status::Invalid("envelope sender: " + s.message(), "envelope_from");
  }
  if (Status s = CheckAddress(recipient); !s.ok())
    return Status::Invalid("recipient: " + s.message(), "recipient");
  if (message.empty()) return Status::Invalid("the message is empty", "message");
  auto item = std::make_unique<Item>();
  item->from = std::move(from);
  item->recipient = std::move(recipient);
  item->message = std::move(message);
  item->lane = lane;
  item->callback = std::move(callback);
  item->submitted_us = NowMicros();
  const int l = LaneIndex(lane);
  {
    std::lock_guard lock(mu_);
    if (!accepting_) return Status::Unavailable("the email sender is shutting down");
    if (queued_ >= options_.max_queue)
      return Status::Unavailable("the email queue is full (" + std::to_string(queued_) +
                                 " messages waiting); try again later");
    if (AllDown(item->submitted_us)) {
      std::string why;
      for (const auto& rs : relays_)
        why += (why.empty() ? "" : "; ") + rs->config.name + ": " + rs->last_error;
      return Status::Unavailable("every relay is down (" + why + ")");
    }
    std::string domain_name = AddressDomain(item->recipient);
    auto& slot = domains_[domain_name];
    if (!slot) {
      slot = std::make_unique<Domain>();
      slot->name = std::move(domain_name);
    }
    Domain* d = slot.get();
    item->domain = d;
    d->pending[l].push_back(std::move(item));
    ++queued_;
    Enlist(d, l, /*front=*/false);
    UpdateGauges();
    Wake(l);
  }
  return Status::Ok();
}

void EmailSender::Impl::WorkerLoop(size_t relay, bool reserved, int index) {
  RelayState& rs = *relays_[relay];
  {
    // Writes to a closed socket must fail with EPIPE, not kill the process.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    const std::string name =
        ("email-" + rs.config.name).substr(0, 12) + "-" + std::to_string(index);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  }
  SmtpClientOptions client_options{options_.helo_name, options_.timeouts};
  std::unique_ptr<SmtpClient> client;
  int64_t idle_since = NowMicros();
  std::condition_variable& cv = reserved ? rs.cv_reserved : rs.cv_general;
  std::vector<Finished> done;

  auto close_client = [&](bool quit) {
    if (!client) return;
    if (quit) client->Quit();
    client.reset();
    gauges_->open[relay].fetch_sub(1, std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    --rs.stats.open_connections;
  };

  while (true) {
    std::unique_ptr<Item> item;
    bool probe = false;
    {
      std::unique_lock lock(mu_);
      while (!stopping_) {
        const int64_t now = NowMicros();
        int64_t wake_at = 0;
        item = TryTake(relay, reserved, now, &wake_at, &probe);
        if (item) break;
        if (client) {
          const int64_t idle_end = idle_since + options_.idle_timeout * 1000;
          if (now >= idle_end) break;
          if (wake_at == 0 || idle_end < wake_at) wake_at = idle_end;
        }
        if (wake_at > 0) {
          cv.wait_for(lock, std::chrono::microseconds(std::max<int64_t>(wake_at - now, 1)));
        } else {
          cv.wait(lock);
        }
      }
      if (!item && stopping_) break;
    }
    if (!item) {
      close_client(/*quit=*/true);  // idle too long
      continue;
    }

    if (client && client->IsStale()) close_client(/*quit=*/false);
    if (!client) {
      auto connected = SmtpClient::Connect(rs.config, client_options, rs.tls);
      if (!connected) {
        const int64_t now = NowMicros();
        std::vector<std::unique_ptr<Item>> failed;
        {
          std::lock_guard lock(mu_);
          ++rs.stats.connect_failures;
          if (rs.connect_failures_total) rs.connect_failures_total->Add();
          // Workers connecting at the same moment all fail together: count that once.
          if (rs.consecutive_failures == 0 || probe) {
            ++rs.consecutive_failures;
            const int shift = std::min(rs.consecutive_failures - 1, 20);
            const int64_t pause_ms =
                std::min<int64_t>(options_.relay_retry_initial << shift, options_.relay_retry_max);
            rs.down_until_us = now + pause_ms * 1000;
          }
          rs.probing = false;
          rs.last_error = connected.error().message();
          rs.stats.last_error = rs.last_error;
          if (stopping_ || AllDown(now) || item->attempts >= options_.max_attempts) {
            ReleaseSlot(*item);
            MaybeForgetDomain(item->domain);
            failed.push_back(std::move(item));
            if (AllDown(now)) {
              for (auto& other : DrainQueue()) failed.push_back(std::move(other));
            }
          } else {
            Requeue(std::move(item));
          }
          if (!failed.empty()) drained_.notify_all();
        }
        WakeAll();  // a relay went down: the next one may take over
        for (size_t i = 0; i < failed.size(); ++i) {
          SendOutcome o;
          o.status = SendStatus::kTemporaryFailure;
          o.stage = SmtpStage::kConnect;
          o.text = i == 0 ? connected.error().message()
                          : "every relay is down; last error: " + connected.error().message();
          o.relay = rs.config.name;
          o.attempts = failed[i]->attempts;
          if (i == 0) {
            std::lock_guard lock(mu_);
            Count(rs, o, failed[i]->submitted_us);  // only this message reached the relay
          }
          if (failed[i]->callback) failed[i]->callback(o);
        }
        continue;
      }
      client = std::move(*connected);
      gauges_->open[relay].fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(mu_);
      ++rs.stats.connections_opened;
      ++rs.stats.open_connections;
      if (rs.connections_total) rs.connections_total->Add();
      if (rs.consecutive_failures > 0) {
        rs.consecutive_failures = 0;
        rs.down_until_us = 0;
        rs.probing = false;
        rs.last_error.clear();
        rs.stats.last_error.clear();
        WakeAll();
      }
    }

    SendOutcome outcome = client->Send(item->from, item->recipient, item->message);
    outcome.relay = rs.config.name;
    outcome.attempts = item->attempts;
    const bool broken = !client->usable();
    if (broken) close_client(/*quit=*/false);
    idle_since = NowMicros();
    {
      std::lock_guard lock(mu_);
      if (probe) {
        // A connection kept from before the relay went down carried the probe.
        rs.probing = false;
        if (!broken && rs.consecutive_failures > 0) {
          rs.consecutive_failures = 0;
          rs.down_until_us = 0;
          WakeAll();
        }
      }
      const bool retry = broken && outcome.status == SendStatus::kTemporaryFailure &&
                         !outcome.maybe_delivered && item->attempts < options_.max_attempts &&
                         !stopping_;
      if (retry) {
        Requeue(std::move(item));
      } else {
        Count(rs, outcome, item->submitted_us);
        ReleaseSlot(*item);
        MaybeForgetDomain(item->domain);
        item->domain = nullptr;
        done.push_back(Finished{std::move(item), std::move(outcome)});
        if (queued_ == 0 && in_flight_ == 0) drained_.notify_all();
      }
    }
    Deliver(done);
  }
  close_client(/*quit=*/true);
}

void EmailSender::Impl::Shutdown(core::Millis drain_timeout) {
  std::call_once(shutdown_once_, [&] {
    std::vector<std::unique_ptr<Item>> left;
    {
      std::unique_lock lock(mu_);
      accepting_ = false;
      if (drain_timeout > 0)
        drained_.wait_for(lock, std::chrono::milliseconds(drain_timeout),
                          [&] { return queued_ == 0 && in_flight_ == 0; });
      stopping_ = true;
      left = DrainQueue();
    }
    WakeAll();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    for (auto& item : left) {
      SendOutcome o;
      o.status = SendStatus::kTemporaryFailure;
      o.stage = SmtpStage::kConnect;
      o.text = "the email sender shut down before sending this message";
      o.attempts = item->attempts;
      if (item->callback) item->callback(o);
    }
  });
}

SenderStats EmailSender::Impl::Stats() const {
  std::lock_guard lock(mu_);
  SenderStats s;
  const int64_t now = NowMicros();
  for (const auto& rs : relays_) {
    RelayStats r = rs->stats;
    r.down = rs->consecutive_failures > 0 && now < rs->down_until_us;
    s.relays.push_back(std::move(r));
  }
  s.queued = queued_;
  s.in_flight = in_flight_;
  s.retried = retried_;
  return s;
}

// ---------------------------------------------------------------------------------------------

EmailSender::EmailSender(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EmailSender::~EmailSender() { impl_->Shutdown(0); }

Result<std::unique_ptr<EmailSender>> EmailSender::Create(SenderOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (Status s = impl->Init(); !s.ok()) {
    impl->Shutdown(0);
    return Err(s);
  }
  return std::unique_ptr<EmailSender>(new EmailSender(std::move(impl)));
}

Status EmailSender::Submit(std::string envelope_from, std::string recipient, std::string message,
                           Lane lane, SendCallback callback) {
  return impl_->Submit(std::move(envelope_from), std::move(recipient), std::move(message), lane,
                       std::move(callback));
}

void EmailSender::Shutdown(core::Millis drain_timeout) { impl_->Shutdown(drain_timeout); }

size_t EmailSender::QueueDepth() const { return impl_->QueueDepth(); }

SenderStats EmailSender::Stats() const { return impl_->Stats(); }

}  // namespace nudge::channel
