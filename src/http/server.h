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
  size_t max_body = 1 << 20;  // longer bodies are answered 413 without reading them
};

class Router {
 public:
  // pattern: "/api/v1/contacts/{id}/events". Returns *this for chaining.
  Router& Add(std::string method, std::string_view pattern, Handler handler,
              size_t max_body = 1 << 20);
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
  // Stops accepting new connections; open ones are served until Stop().
  void Quiesce();
  // Waits up to `timeout_ms` for handlers that have not replied yet.
  void WaitIdle(int timeout_ms);
  void Stop();

  // Internals called from libmicrohttpd's C callbacks.
  struct Connection;
  int OnRequest(void* connection, const char* url, const char* method, const char* upload_data,
                size_t* upload_data_size, void** con_cls);
  void OnCompleted(void** con_cls);

 private:
  ServerOptions options_;
  Router router_;
  const core::Clock& clock_;
  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  std::atomic<int> pending_{0};  // handlers called whose reply has not come back
  core::Counter* requests_ = nullptr;
};

// Parses "host:port" ("127.0.0.1:8080", "[::1]:80", ":8080" meaning all interfaces).
Result<std::pair<std::string, uint16_t>> ParseListen(std::string_view listen);

}  // namespace nudge::http
