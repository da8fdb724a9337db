// HttpPool: outbound HTTP requests (SMS gateway, webhooks) on a few named I/O threads, each
// keeping its own libcurl handle so connections to the same host are reused. Requests queue;
// each gets exactly one callback, from an I/O thread (or from Shutdown for requests that never
// started).
//
// Thread-safe: Submit and Shutdown may be called from any thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/result.h"

namespace nudge::channel {

struct HttpRequest {
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string basic_user;  // Basic auth when not empty
  std::string basic_password;
  core::Millis timeout = 10'000;
};

struct HttpResponse {
  int status = 0;     // 0: no response (connection problem, timeout)
  std::string body;   // the first 64 KB
  std::string error;  // what went wrong when status is 0
  // With status 0: the request itself is wrong (a malformed URL, a scheme other than http or
  // https), so sending it again cannot succeed.
  bool malformed = false;
};

using HttpCallback = std::function<void(HttpResponse)>;

class HttpPool {
 public:
  // name: the threads' prefix ("sms", "webhook"); threads: how many requests run at once.
  HttpPool(std::string name, int threads, size_t max_queue = 100'000);
  ~HttpPool();
  HttpPool(const HttpPool&) = delete;
  HttpPool& operator=(const HttpPool&) = delete;

  // kUnavailable when the queue is full or the pool is shut down (no callback then).
  Status Submit(HttpRequest request, HttpCallback done);
  // Stops taking requests; lets queued ones run for up to drain, then fails the rest
  // (status 0, "shutting down") and joins the threads. Idempotent.
  void Shutdown(core::Millis drain);

 private:
  void Run(int index);

  std::string name_;
  size_t max_queue_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<HttpRequest, HttpCallback>> queue_;  // GUARDED_BY(mutex_)
  bool stopping_ = false;                                   // GUARDED_BY(mutex_)
  bool abandon_ = false;                                    // GUARDED_BY(mutex_)
  std::vector<std::thread> threads_;
};

}  // namespace nudge::channel
