// An HTTP/1.1 server over libmicrohttpd, with a small router and asynchronous replies.
//
// A handler receives the whole request (body included, up to its route's limit) and a Reply.
// It may call the Reply before returning or later from any thread: until then the connection
// is suspended, costing no thread. This is how the tracking API answers only after the store
// has committed the events without blocking an HTTP thread on the fsync.
//
// Thread-safety: routes are added before Start(); after that Server is thread-safe.
// Handlers run on the server's threads (named "http").
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/result.h"

struct MHD_Daemon;

namespace nudge::core {
class MetricsRegistry;
class Counter;
}  // namespace nudge::core

namespace nudge::http {

struct Request {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names lowercased
  std::map<std::string, std::string> query;    // decoded
  std::map<std::string, std::string> params;   // from {name} segments of the route
  std::string body;
  std::string remote_ip;
  core::Millis received_at = 0;

  // The header's value, or "" (name in lowercase).
  const std::string& Header(const std::string& lowercase_name) const;
  // The query parameter's value, or `fallback`.
  std::string Query(const std::string& name, std::string fallback = "") const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Delivers the response. Call exactly once, from any thread; later calls are ignored.
using Reply = std::function<void(Response)>;
using Handler = std::function<void(Request&, Reply)>;

struct Route {
  std::string method;
  std::vector<std::string> segments;  // "{name}" captures one segment
  Handler handler;
  size_t max_body = 1 << 20;           // longer bodies are answered 413 without reading them
  std::function<void()> on_too_large;  // told of each such 413 (for metrics); may be empty
};

class Router {
 public:
  // pattern: "/api/v1/contacts/{id}/events". Returns *this for chaining.
  Router& Add(std::string method, std::string_view pattern, Handler handler,
              size_t max_body = 1 << 20, std::function<void()> on_too_large = {});
  // The route for method and path with its captures, or nullptr. `method_allowed` tells,
  // when no route matched, whether some route has the path under another method.
  const Route* Match(std::string_view method, std::string_view path,
                     std::map<std::string, std::string>& params, bool& path_known) const;

 private:
  std::vector<Route> routes_;
};

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 picks a free one
  int threads = 2;
  int connection_timeout_seconds = 60;
};

class Server {
 public:
  Server(ServerOptions options, Router router, const core::Clock& clock,
         core::MetricsRegistry* metrics);
  ~Server();

  Status Start();
  // The port bound (useful with port 0).
  uint16_t port() const { return port_; }
  // Starts draining: new connections are closed as soon as they are accepted; requests
  // arriving on open ones are answered 503 with "Connection: close", and so is every response
  // from now on.
  void Quiesce();
  bool draining() const { return draining_.load(); }
  // Waits up to `timeout_ms` for the requests in flight to be answered (answering 503 to those
  // still waiting after that), then closes every connection and stops. Idempotent.
  void Stop(int timeout_ms = 10000);

  // Internals called from libmicrohttpd's C callbacks.
  struct Connection;
  int OnRequest(void* connection, const char* url, const char* method, const char* upload_data,
                size_t* upload_data_size, void** con_cls);
  void OnCompleted(void** con_cls);

 private:
  ServerOptions options_;
  Router router_;
  const core::Clock& clock_;
  // Hands a reply to its connection and wakes it if it was suspended.
  void Deliver(const std::shared_ptr<Connection>& c, Response r);

  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  // Set by Quiesce: connections accepted from then on are closed at once (the accept policy),
  // and requests on open ones are answered 503.
  std::atomic<bool> draining_{false};
  std::atomic<int> suspended_{0};  // connections suspended and not yet resumed by the daemon
  std::atomic<int> receiving_{0};  // requests whose headers came and whose body is arriving
  std::mutex pending_mutex_;
  std::set<std::shared_ptr<Connection>>
      pending_;  // handled, not replied; GUARDED_BY(pending_mutex_)
  core::Counter* requests_ = nullptr;
};

// Parses "host:port" ("127.0.0.1:8080", "[::1]:80", ":8080" meaning all interfaces).
Result<std::pair<std::string, uint16_t>> ParseListen(std::string_view listen);

}  // namespace nudge::http
