// email_bench: personalized messages through EmailSender into a relay (bench/email/run.sh
// points it at Postfix's smtp-sink). Each message is built here with BuildMessage (a different
// name, subject, links and unsubscribe token per recipient), optionally DKIM-signed, then
// submitted; at most --window messages are outstanding, as an outbox reader would keep them.
//
// Prints one JSON object: messages/s from the first Submit to the last outcome, the latency
// from Submit to the relay's 250 (p50/p99/max), and the process's peak resident memory.
//
// Usage: email_bench --port N [--host 127.0.0.1] [--count 100000] [--pool 8] [--window 64]
//                    [--rate 0] [--dkim key.pem] [--producers 1] [--label nudge]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "channel/email/dkim.h"
#include "channel/email/message.h"
#include "channel/email/sender.h"
#include "core/json.h"

using namespace nudge;
using Steady = std::chrono::steady_clock;

namespace {

const char* kFirst[] = {"Anna", "Jürgen", "Sofia", "Liam",    "Mei",   "Olivia", "Noah",
                        "Zoë",  "Mateo",  "Aiko",  "Chloé",   "Ivan",  "Priya",  "Lucas",
                        "Emma", "Björn",  "Fatma", "Hiroshi", "Elena", "Tomás"};
const char* kLast[] = {"Schmidt",  "García", "Rossi",  "Nguyen", "Müller", "Smith",
                       "Kowalski", "Dubois", "Tanaka", "Silva",  "Novák",  "Jensen"};
const char* kTopics[] = {"integrations", "pricing", "webinar", "case study", "release notes"};

std::string Body(const std::string& first, const std::string& topic, int i, bool html) {
  std::string out;
  const std::string link = "https://acme.test/r/" + std::to_string(i * 7919 % 1000003) + "/";
  for (int p = 0; p < 6; ++p) {
    const std::string para = "Hi " + first + ", here is paragraph " + std::to_string(p + 1) +
                             " about our " + topic +
                             ": teams like yours cut their onboarding time in half last quarter, "
                             "and we picked three stories you might like.";
    if (html) {
      out += "<p style=\"font-family:Arial,sans-serif;font-size:15px;line-height:22px\">" + para +
             " <a href=\"" + link + std::to_string(p) + "\">Read more</a></p>\n";
    } else {
      out += para + "\n" + link + std::to_string(p) + "\n\n";
    }
  }
  return out;
}

channel::EmailContent Personalized(int i) {
  const std::string first = kFirst[i % 20];
  const std::string last = kLast[(i / 20) % 12];
  const std::string topic = kTopics[i % 5];
  const std::string token = std::to_string(1000000007LL * (i + 1) % 998244353);
  channel::EmailContent c;
  c.from = {"Acme", "hello@acme.test"};
  c.to = {first + " " + last,
          "user" + std::to_string(i) + "@example" + std::to_string(i % 50) + ".test"};
  c.subject = first + ", your " + topic + " picks for this week (#" + std::to_string(i) + ")";
  c.preheader = "Three stories picked for " + first;
  c.text = Body(first, topic, i, false) + "\nAcme Inc, 1 Main St, Springfield\n";
  c.html = "<html><body>" + Body(first, topic, i, true) +
           "<p style=\"color:#888\">Acme Inc, 1 Main St, Springfield</p></body></html>";
  c.message_id = "b" + std::to_string(i) + "." + token + "@acme.test";
  c.headers = {{"List-Unsubscribe", "<https://acme.test/u/" + token + ">, <mailto:unsubscribe+" +
                                        token + "@acme.test>"},
               {"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
               {"Feedback-ID", "digest:journey-7:acme"}};
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1", dkim_key, label = "nudge";
  int port = 0, count = 100000, pool = 8, window = 64, producers = 1;
  double rate = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--port")
      port = std::atoi(value.c_str());
    else if (flag == "--host")
      host = value;
    else if (flag == "--count")
      count = std::atoi(value.c_str());
    else if (flag == "--pool")
      pool = std::atoi(value.c_str());
    else if (flag == "--window")
      window = std::atoi(value.c_str());
    else if (flag == "--rate")
      rate = std::atof(value.c_str());
    else if (flag == "--dkim")
      dkim_key = value;
    else if (flag == "--producers")
      producers = std::max(1, std::atoi(value.c_str()));
    else if (flag == "--label")
      label = value;
    else {
      std::cerr << "email_bench: unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (port <= 0 || count <= 0) {
    std::cerr << "usage: email_bench --port N [--count 100000] [--pool 8] [--window 64] "
                 "[--rate 0] [--dkim key.pem] [--producers 1] [--label nudge]\n";
    return 2;
  }

  std::unique_ptr<channel::DkimSigner> signer;
  if (!dkim_key.empty()) {
    auto s = channel::DkimSigner::FromConfig({"acme.test", "s1", dkim_key});
    if (!s) {
      std::cerr << "email_bench: " << s.error().ToString() << "\n";
      return 1;
    }
    signer = std::move(*s);
  }

  channel::SenderOptions options;
  channel::RelayConfig relay;
  relay.name = "sink";
  relay.host = host;
  relay.port = port;
  relay.pool = pool;
  relay.transactional_reserved = 0;
  options.relays.push_back(relay);
  options.helo_name = "bench.acme.test";
  auto sender = channel::EmailSender::Create(options);
  if (!sender) {
    std::cerr << "email_bench: " << sender.error().ToString() << "\n";
    return 1;
  }

  core::SystemClock clock;
  std::vector<int64_t> submitted(static_cast<size_t>(count));
  std::vector<int32_t> latency_us(static_cast<size_t>(count));
  std::atomic<int> sent{0}, failed{0}, done{0};
  std::mutex mu;
  std::condition_variable cv;
  int outstanding = 0;
  std::string first_error;

  const auto start = Steady::now();
  auto produce = [&](int first, int step) {
    for (int i = first; i < count; i += step) {
      if (rate > 0)
        std::this_thread::sleep_until(
            start + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / rate)));
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return outstanding < window; });
        ++outstanding;
      }
      channel::EmailContent c = Personalized(i);
      auto built = channel::BuildMessage(c, clock);
      if (built && signer) (void)signer->Sign(*built);
      const std::string rcpt = c.to.address;
      submitted[i] = core::MonotonicMicros();
      auto on_done = [&, i](const channel::SendOutcome& o) {
        latency_us[i] = static_cast<int32_t>(core::MonotonicMicros() - submitted[i]);
        if (o.sent()) {
          sent.fetch_add(1);
        } else {
          std::lock_guard lock(mu);
          if (first_error.empty()) first_error = o.ToString();
          failed.fetch_add(1);
        }
        done.fetch_add(1);
        std::lock_guard lock(mu);
        --outstanding;
        cv.notify_all();
      };
      Status s = built ? (*sender)->Submit("bounce@acme.test", rcpt, std::move(*built),
                                           channel::Lane::kBulk, on_done)
                       : built.error();
      if (!s.ok()) {
        std::lock_guard lock(mu);
        if (first_error.empty()) first_error = s.ToString();
        failed.fetch_add(1);
        done.fetch_add(1);
        --outstanding;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) threads.emplace_back(produce, p, producers);
  for (auto& t : threads) t.join();
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return outstanding == 0; });
  }
  const double seconds = std::chrono::duration<double>(Steady::now() - start).count();
  const long peak_rss_kb = nudge::bench::ProcStatusBytes("VmHWM") / 1024;
  const channel::SenderStats stats = (*sender)->Stats();
  (*sender)->Shutdown(1000);

  std::vector<int32_t> lat = latency_us;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double q) {
    return lat.empty()
               ? 0.0
               : lat[std::min(lat.size() - 1, static_cast<size_t>(q * lat.size()))] / 1000.0;
  };
  std::printf(
      "{\"label\":\"%s\",\"messages\":%d,\"sent\":%d,\"failed\":%d,\"seconds\":%.3f,"
      "\"messages_per_second\":%.0f,\"latency_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
      "\"peak_rss_mb\":%.1f,\"connections\":%llu,\"pool\":%d,\"window\":%d,\"rate\":%.0f,"
      "\"dkim\":%s,\"producers\":%d%s}\n",
      label.c_str(), count, sent.load(), failed.load(), seconds, count / seconds, pct(0.5),
      pct(0.99), lat.empty() ? 0.0 : lat.back() / 1000.0, peak_rss_kb / 1024.0,
      static_cast<unsigned long long>(stats.relays[0].connections_opened), pool, window, rate,
      signer ? "true" : "false", producers,
      first_error.empty() ? "" : (",\"first_error\":" + core::JsonString(first_error)).c_str());
  return failed.load() == 0 ? 0 : 1;
}
