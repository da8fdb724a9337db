#include "channel/http_pool.h"

#include <curl/curl.h>
#include <pthread.h>

#include <chrono>

namespace nudge::channel {
namespace {

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* out = static_cast<std::string*>(user);
  const size_t bytes = size * n;
  if (out->size() < 65536) out->append(data, std::min(bytes, 65536 - out->size()));
  return bytes;
}

HttpResponse Perform(CURL* curl, const HttpRequest& r) {
  HttpResponse resp;
  curl_easy_reset(curl);
  curl_easy_setopt(curl, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<core::Millis>(r.timeout, 5'000)));
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  if (r.method != "GET" && r.method != "HEAD") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, r.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
  }
  curl_slist* headers = nullptr;
  for (const auto& [k, v] : r.headers) headers = curl_slist_append(headers, (k + ": " + v).c_str());
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (!r.basic_user.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, r.basic_user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, r.basic_password.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "nudge/0.1");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp.body);
  const CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    resp.status = 0;
    resp.error = curl_easy_strerror(rc);
    resp.malformed = rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL;
    return resp;
  }
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  resp.status = static_cast<int>(code);
  return resp;
}

}  // namespace

HttpPool::HttpPool(std::string name, int threads, size_t max_queue)
    : name_(std::move(name)), max_queue_(max_queue) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this, i] { Run(i); });
}

HttpPool::~HttpPool() { Shutdown(0); }

Status HttpPool::Submit(HttpRequest request, HttpCallback done) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Status::Unavailable(name_ + ": shutting down");
    if (queue_.size() >= max_queue_) return Status::Unavailable(name_ + ": the queue is full");
    queue_.emplace_back(std::move(request), std::move(done));
  }
  cv_.notify_one();
  return Status::Ok();
}

void HttpPool::Run(int index) {
  const std::string thread_name = (name_ + "-" + std::to_string(index)).substr(0, 15);
  pthread_setname_np(pthread_self(), thread_name.c_str());
  CURL* curl = curl_easy_init();
  for (;;) {
    std::pair<HttpRequest, HttpCallback> item;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty() || abandon_) break;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    HttpResponse resp = curl ? Perform(curl, item.first) : HttpResponse{0, "", "no curl handle"};
    if (item.second) item.second(std::move(resp));
  }
  if (curl) curl_easy_cleanup(curl);
}

void HttpPool::Shutdown(core::Millis drain) {
  {
    std::lock_guard lock(mutex_);
    if (threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain);
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (queue_.empty() || std::chrono::steady_clock::now() >= deadline) {
        abandon_ = true;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  std::deque<std::pair<HttpRequest, HttpCallback>> rest;
  {
    std::lock_guard lock(mutex_);
    rest.swap(queue_);
  }
  for (auto& [req, done] : rest)
    if (done) done(HttpResponse{0, "", "shutting down"});
}

}  // namespace nudge::channel
