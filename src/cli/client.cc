#include "cli/client.h"

#include <curl/curl.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

namespace nudge::cli {
namespace {

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

std::optional<std::string> Env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

}  // namespace

Result<ApiClient> ApiClient::Make(const std::optional<std::string>& server,
                                  const std::optional<std::string>& key) {
  std::string s = server ? *server : Env("NUDGE_SERVER").value_or("http://127.0.0.1:8080");
  while (!s.empty() && s.back() == '/') s.pop_back();
  if (s.rfind("http://", 0) != 0 && s.rfind("https://", 0) != 0) {
    // "host:port" gets http://; another scheme is a mistake to name, not to prefix.
    if (const size_t colon = s.find("://"); colon != std::string::npos)
      return Err(Status::Invalid("the server must be an http:// or https:// URL, got '" + s + "'",
                                 server ? "--server" : "NUDGE_SERVER"));
    s = "http://" + s;
  }
  std::optional<std::string> k = key ? key : Env("NUDGE_ADMIN_KEY");
  if (!k)
    return Err(
        Status::Invalid("an admin key is needed: pass --key or set NUDGE_ADMIN_KEY", "--key"));
  return ApiClient(std::move(s), std::move(*k));
}

ApiClient::ApiClient(std::string server, std::string key)
    : server_(std::move(server)), key_(std::move(key)), curl_(curl_easy_init()) {}

ApiClient::ApiClient(ApiClient&& o) noexcept
    : server_(std::move(o.server_)),
      key_(std::move(o.key_)),
      curl_(std::exchange(o.curl_, nullptr)) {}

ApiClient& ApiClient::operator=(ApiClient&& o) noexcept {
  if (this != &o) {
    if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
    server_ = std::move(o.server_);
    key_ = std::move(o.key_);
    curl_ = std::exchange(o.curl_, nullptr);
  }
  return *this;
}

ApiClient::~ApiClient() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Result<ApiResponse> ApiClient::Call(const std::string& method, const std::string& path,
                                    const std::string& body,
                                    const std::vector<std::string>& extra) {
  CURL* curl = static_cast<CURL*>(curl_);
  if (!curl) return Err(Status::Internal("libcurl could not start"));
  curl_easy_reset(curl);
  ApiResponse out;
  const std::string url = server_ + path;
  curl_slist* headers = nullptr;
  const std::string auth = "Authorization: Bearer " + key_;
  headers = curl_slist_append(headers, auth.c_str());
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");
  for (const auto& h : extra) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method != "GET" && method != "DELETE") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 300L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  const CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK)
    return Err(
        Status::Unavailable("cannot reach nudge at " + server_ + ": " + curl_easy_strerror(rc)));
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  return out;
}

Result<ApiResponse> ApiClient::CallOk(const std::string& method, const std::string& path,
                                      const std::string& body,
                                      const std::vector<std::string>& headers) {
  NUDGE_ASSIGN_OR_RETURN(ApiResponse r, Call(method, path, body, headers));
  if (r.status >= 200 && r.status < 300) return r;
  std::string message = "HTTP " + std::to_string(r.status);
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_string())
    message += ": " + j["error"].get<std::string>();
  Code code = Code::kInternal;
  if (r.status == 400) code = Code::kInvalidArgument;
  if (r.status == 401) code = Code::kUnauthenticated;
  if (r.status == 403) code = Code::kPermissionDenied;
  if (r.status == 404) code = Code::kNotFound;
  if (r.status == 409) code = Code::kAlreadyExists;
  if (r.status == 413) code = Code::kTooLarge;
  if (r.status == 503) code = Code::kUnavailable;
  return Err(Status(code, message));
}

}  // namespace nudge::cli
