#include "http/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "core/metrics.h"
#include "core/url.h"

namespace nudge::http {

const std::string& Request::Header(const std::string& lowercase_name) const {
  static const std::string kEmpty;
  auto it = headers.find(lowercase_name);
  return it == headers.end() ? kEmpty : it->second;
}

std::string Request::Query(const std::string& name, std::string fallback) const {
  auto it = query.find(name);
  return it == query.end() ? std::move(fallback) : it->second;
}

namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = i;
    while (j < path.size() && path[j] != '/') ++j;
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

Router& Router::Add(std::string method, std::string_view pattern, Handler handler, size_t max_body,
                    std::function<void()> on_too_large) {
  routes_.push_back({std::move(method), SplitPath(pattern), std::move(handler), max_body,
                     std::move(on_too_large)});
  return *this;
}

const Route* Router::Match(std::string_view method, std::string_view path,
                           std::map<std::string, std::string>& params, bool& path_known) const {
  // Split where the request wrote '/', then decoded: an id holding "%2F" is one segment.
  auto segments = SplitPath(path);
  for (std::string& segment : segments) segment = core::PercentDecode(segment);
  path_known = false;
  for (const Route& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    std::map<std::string, std::string> captured;
    bool ok = true;
    for (size_t i = 0; i < segments.size() && ok; ++i) {
      const std::string& want = r.segments[i];
      if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
        captured[want.substr(1, want.size() - 2)] = segments[i];
      } else {
        ok = want == segments[i];
      }
    }
    if (!ok) continue;
    path_known = true;
    if (r.method != method) continue;
    params = std::move(captured);
    return &r;
  }
  return nullptr;
}

Result<std::pair<std::string, uint16_t>> ParseListen(std::string_view listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos)
    return Err(Status::Invalid("expected host:port, got '" + std::string(listen) + "'", "listen"));
  std::string host(listen.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string_view port_text = listen.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return Err(Status::Invalid("the port must be a number, got '" + std::string(port_text) + "'",
                               "listen"));
  const int port = std::stoi(std::string(port_text));
  if (port > 65535) return Err(Status::Invalid("the port must be at most 65535", "listen"));
  return std::make_pair(host, static_cast<uint16_t>(port));
}

// One HTTP request's life: body accumulation, the handler's reply, and suspension.
struct Server::Connection {
  MHD_Connection* conn = nullptr;
  std::string raw_path;  // the request's path as written, escapes and all (UriLog)
  bool started = false;  // the access handler saw the headers
  Request request;
  const Route* route = nullptr;
  std::optional<Response> early;  // answered before the body was read (404, 413, ...)
  bool early_queued = false;      // queued with the headers (Expect: 100-continue)
  bool too_large = false;
  bool handled = false;
  bool receiving = false;  // counted in Server::receiving_ until its body is in

  std::mutex mutex;
  bool suspended = false;            // GUARDED_BY(mutex)
  std::optional<Response> response;  // GUARDED_BY(mutex)
  bool replied = false;              // GUARDED_BY(mutex)
};

namespace {

// Memory per connection (headers, the read buffer, the answer's head). libmicrohttpd zeroes
// all of it after every request: at its default of 32 KB that was 13% of the HTTP threads'
// time on /v1/track, 7% at 16 KB. Request headers up to about 15 KB fit (431 above); bodies
// stream through in pieces whatever their size.
constexpr size_t kConnectionMemory = 16 * 1024;

MHD_Result Queue(MHD_Connection* conn, const Response& r, bool close) {
  MHD_Response* resp = MHD_create_response_from_buffer(
      r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
  if (!resp) return MHD_NO;
  if (!r.content_type.empty())
    MHD_add_response_header(resp, "Content-Type", r.content_type.c_str());
  for (const auto& [k, v] : r.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
  if (close) MHD_add_response_header(resp, "Connection", "close");
  const MHD_Result rc = MHD_queue_response(conn, static_cast<unsigned>(r.status), resp);
  MHD_destroy_response(resp);
  return rc;
}

bool HasExpectContinue(const Request& req) {
  std::string v = req.Header("expect");
  for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return v.find("100-continue") != std::string::npos;
}

Response JsonError(int status, const std::string& code, const std::string& message,
                   const std::string& field = "") {
  Response r;
  r.status = status;
  std::string body = "{\"success\":false,\"code\":\"" + code + "\",\"error\":\"";
  body += message;  // messages built here carry no characters that need escaping
  body += "\"";
  if (!field.empty()) body += ",\"field\":\"" + field + "\"";
  body += "}";
  r.body = std::move(body);
  return r;
}

MHD_Result CollectHeader(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto* map = static_cast<std::map<std::string, std::string>*>(cls);
  std::string k(key);
  std::transform(k.begin(), k.end(), k.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  (*map)[std::move(k)] = value ? value : "";
  return MHD_YES;
}

MHD_Result CollectArg(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto* map = static_cast<std::map<std::string, std::string>*>(cls);
  (*map)[key] = value ? value : "";
  return MHD_YES;
}

MHD_Result AccessHandler(void* cls, MHD_Connection* connection, const char* url, const char* method,
                         const char*, const char* upload_data, size_t* upload_data_size,
                         void** con_cls) {
  return static_cast<Server*>(cls)->OnRequest(connection, url, method, upload_data,
                                              upload_data_size, con_cls) != 0
             ? MHD_YES
             : MHD_NO;
}

// Called with each request's URI as written, before libmicrohttpd decodes it (which turns
// %2F into '/' and cuts at %00): routing splits this one, then decodes each segment. What it
// returns is the request's state, which the completed handler frees.
void* UriLog(void*, const char* uri, MHD_Connection*) {
  auto* holder = new std::shared_ptr<Server::Connection>(std::make_shared<Server::Connection>());
  std::string_view raw(uri != nullptr ? uri : "");
  (*holder)->raw_path = std::string(raw.substr(0, raw.find('?')));
  return holder;
}

// Once the server drains, a new connection is closed as soon as it is accepted.
MHD_Result AcceptPolicy(void* cls, const sockaddr*, socklen_t) {
  return static_cast<Server*>(cls)->draining() ? MHD_NO : MHD_YES;
}

void CompletedHandler(void* cls, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
  static_cast<Server*>(cls)->OnCompleted(con_cls);
}

}  // namespace

Server::Server(ServerOptions options, Router router, const core::Clock& clock,
               core::MetricsRegistry* metrics)
    : options_(std::move(options)), router_(std::move(router)), clock_(clock) {
  if (metrics) {
    requests_ = &metrics->GetCounter("nudge_http_requests_total", "HTTP requests received.");
    metrics->AddGauge("nudge_queue_depth", "Work waiting in a queue.",
                      "{queue=\"http_awaiting_reply\"}", [this] {
                        std::lock_guard lock(pending_mutex_);
                        return static_cast<double>(pending_.size());
                      });
  }
}

Server::~Server() { Stop(); }

Status Server::Start() {
  NUDGE_ASSIGN_OR_RETURN(auto hp, ParseListen(options_.listen));
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ITC | MHD_USE_TURBO;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  const std::string host = hp.first.empty() ? "0.0.0.0" : hp.first;
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(hp.second);
    addr_len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(hp.second);
    addr_len = sizeof(sockaddr_in6);
    flags |= MHD_USE_IPv6;
  } else {
    return Status::Invalid("the listen host must be an IP address, got '" + host + "'", "listen");
  }
  (void)addr_len;
  daemon_ = MHD_start_daemon(
      flags, hp.second, &AcceptPolicy, this, &AccessHandler, this, MHD_OPTION_SOCK_ADDR, &addr,
      MHD_OPTION_THREAD_POOL_SIZE, static_cast<unsigned>(std::max(1, options_.threads)),
      MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(options_.connection_timeout_seconds),
      MHD_OPTION_CONNECTION_LIMIT, 10000u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
      MHD_OPTION_NOTIFY_COMPLETED, &CompletedHandler, this, MHD_OPTION_URI_LOG_CALLBACK, &UriLog,
      this, MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, MHD_OPTION_END);
  if (!daemon_)
    return Status::Unavailable("cannot listen on " + options_.listen +
                               " (is the address in use or not on this machine?)");
  const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
  port_ = info ? info->port : hp.second;
  return Status::Ok();
}

// Not MHD_quiesce_daemon: with epoll and an internal polling thread it races that thread to take
// the listening socket out of the epoll set, and the loser aborts the process (libmicrohttpd
// 0.9.75, seen in the unit tests). The listening socket stays open until Stop instead, and the
// accept policy turns new connections away.
void Server::Quiesce() {
  if (daemon_) draining_.store(true);
}

void Server::Deliver(const std::shared_ptr<Connection>& c, Response r) {
  {
    std::lock_guard lock(c->mutex);
    if (c->replied) return;
    c->replied = true;
    c->response = std::move(r);
    if (c->suspended && c->conn) MHD_resume_connection(c->conn);
  }
  std::lock_guard lock(pending_mutex_);
  pending_.erase(c);
}

void Server::Stop(int timeout_ms) {
  if (!daemon_) return;
  Quiesce();
  using Clock = std::chrono::steady_clock;
  auto idle = [this] {
    std::lock_guard lock(pending_mutex_);
    return pending_.empty() && suspended_.load() == 0 && receiving_.load() == 0;
  };
  auto wait_until = [&](Clock::time_point deadline) {
    while (!idle() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  };
  wait_until(Clock::now() + std::chrono::milliseconds(timeout_ms));
  if (!idle()) {
    // Handlers that never answered: answer for them rather than hang the shutdown.
    std::vector<std::shared_ptr<Connection>> late;
    {
      std::lock_guard lock(pending_mutex_);
      late.assign(pending_.begin(), pending_.end());
    }
    for (auto& c : late)
      Deliver(c, JsonError(503, "unavailable", "the server is shutting down; retry"));
    wait_until(Clock::now() + std::chrono::seconds(2));
  }
  // Let the last resumed connections write their responses before they are closed.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (suspended_.load() != 0) return;  // stopping now would abort the process; exit instead
  MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
}

int Server::OnRequest(void* connection, const char* url, const char* method,
                      const char* upload_data, size_t* upload_data_size, void** con_cls) {
  auto* conn = static_cast<MHD_Connection*>(connection);
  auto* holder = static_cast<std::shared_ptr<Connection>*>(*con_cls);
  if (!holder) {
    holder = new std::shared_ptr<Connection>(std::make_shared<Connection>());
    (*holder)->raw_path = url;
    *con_cls = holder;
  }
  if (!(*holder)->started) {
    // First call: headers only. The state is shared with the Reply, which may outlive the
    // connection if the client goes away.
    Connection* c = holder->get();
    c->started = true;
    c->conn = conn;
    if (requests_) requests_->Add();
    Request& req = c->request;
    req.method = method;
    req.path = url;
    req.received_at = clock_.NowMillis();
    MHD_get_connection_values(conn, MHD_HEADER_KIND, &CollectHeader, &req.headers);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, &CollectArg, &req.query);
    if (const auto* ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS)) {
      char ip[INET6_ADDRSTRLEN] = "";
      const sockaddr* sa = ci->client_addr;
      if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, ip, sizeof ip);
      else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, ip, sizeof ip);
      req.remote_ip = ip;
    }
    bool path_known = false;
    c->route = router_.Match(req.method, c->raw_path, req.params, path_known);
    if (draining_.load()) {
      c->early = JsonError(503, "unavailable", "the server is shutting down; retry");
    } else if (c->route && std::any_of(req.params.begin(), req.params.end(), [](const auto& p) {
                 return p.second.find('\0') != std::string::npos;
               })) {
      // "victim%00else" named the contact "victim" once cut there.
      c->early = JsonError(400, "invalid_argument", "a path segment may not hold %00", "path");
    } else if (!c->route) {
      c->early = path_known ? JsonError(405, "method_not_allowed",
                                        "method " + req.method + " is not allowed on this path")
                            : JsonError(404, "not_found", "no such endpoint");
    } else {
      const std::string& length = req.Header("content-length");
      if (!length.empty()) {
        char* end = nullptr;
        const unsigned long long n = std::strtoull(length.c_str(), &end, 10);
        if (n > c->route->max_body) {
          c->early = JsonError(413, "too_large",
                               "the body exceeds " + std::to_string(c->route->max_body) + " bytes",
                               "body");
          if (c->route->on_too_large) c->route->on_too_large();
        } else {
          req.body.reserve(n + 64);  // + padding so the JSON parser need not copy
        }
      }
    }
    // A client that waits for "100 Continue" before sending its body gets the answer instead,
    // and never sends the body. One that sends it unasked has its body read and dropped first:
    // closing with data unread would reset the connection before the answer reaches it.
    if (c->early && HasExpectContinue(req)) {
      c->early_queued = true;
      return Queue(conn, *c->early, /*close=*/true);
    }
    // A drain waits for a request whose body is still arriving, as for one being handled.
    c->receiving = true;
    receiving_.fetch_add(1);
    return MHD_YES;
  }

  Connection* c = holder->get();
  if (*upload_data_size > 0) {
    if (!c->early && !c->too_large) {
      if (c->request.body.size() + *upload_data_size > c->route->max_body) {
        c->too_large = true;
        c->request.body.clear();
        c->request.body.shrink_to_fit();
      } else {
        c->request.body.append(upload_data, *upload_data_size);
      }
    }
    *upload_data_size = 0;
    return MHD_YES;
  }

  if (std::exchange(c->receiving, false)) receiving_.fetch_sub(1);
  const bool close = draining_.load();
  if (c->early_queued) return MHD_YES;
  if (c->early) return Queue(conn, *c->early, close);
  if (c->too_large) {
    if (c->route->on_too_large) c->route->on_too_large();
    return Queue(
        conn,
        JsonError(413, "too_large",
                  "the body exceeds " + std::to_string(c->route->max_body) + " bytes", "body"),
        close);
  }

  if (!c->handled) {
    c->handled = true;
    {
      std::lock_guard lock(pending_mutex_);
      pending_.insert(*holder);
    }
    // A handler answers once; should it throw before answering (a bug: handlers check their
    // input and answer with an error), the client gets a 500 and the server goes on.
    auto answered = std::make_shared<std::atomic<bool>>(false);
    Reply reply = [this, shared = *holder, answered](Response r) {
      if (!answered->exchange(true)) Deliver(shared, std::move(r));
    };
    try {
      c->route->handler(c->request, reply);
    } catch (const std::exception& e) {
      spdlog::error("{} {}: the handler failed: {}", c->request.method, c->request.path, e.what());
      reply(JsonError(500, "internal", "the request could not be handled", ""));
    }
    std::lock_guard lock(c->mutex);
    if (!c->response) {
      c->suspended = true;
      suspended_.fetch_add(1);
      MHD_suspend_connection(conn);
      return MHD_YES;
    }
  }
  std::lock_guard lock(c->mutex);
  if (!c->response) return MHD_YES;  // resumed without a reply: cannot happen, wait on
  if (c->suspended) {
    c->suspended = false;
    suspended_.fetch_sub(1);
  }
  return Queue(conn, *c->response, draining_.load());
}

void Server::OnCompleted(void** con_cls) {
  auto* holder = static_cast<std::shared_ptr<Connection>*>(*con_cls);
  if (!holder) return;
  // A client gone before its body was in.
  if (std::exchange((*holder)->receiving, false)) receiving_.fetch_sub(1);
  {
    std::lock_guard lock((*holder)->mutex);
    (*holder)->conn = nullptr;  // a late Reply must not touch the closed connection
  }
  delete holder;
  *con_cls = nullptr;
}

}  // namespace nudge::http
