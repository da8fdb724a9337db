// ApiClient: the CLI's connection to a running nudge's admin API, over libcurl.
// Thread-compatible: one client per thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace nudge::cli {

struct ApiResponse {
  long status = 0;
  std::string body;
};

class ApiClient {
 public:
  // server: --server, else $NUDGE_SERVER, else http://127.0.0.1:8080.
  // key: --key, else $NUDGE_ADMIN_KEY; kInvalidArgument when neither is set.
  static Result<ApiClient> Make(const std::optional<std::string>& server,
                                const std::optional<std::string>& key);
  ApiClient(ApiClient&&) noexcept;
  ApiClient& operator=(ApiClient&&) noexcept;
  ~ApiClient();

  // Sends the request; transport failures are kUnavailable with the reason. Any HTTP answer,
  // error statuses included, is returned as is.
  // `headers`: extra "Name: value" lines.
  Result<ApiResponse> Call(const std::string& method, const std::string& path,
                           const std::string& body = "",
                           const std::vector<std::string>& headers = {});
  // Call, and turn a non-2xx answer into a Status carrying the server's error message.
  Result<ApiResponse> CallOk(const std::string& method, const std::string& path,
                             const std::string& body = "",
                             const std::vector<std::string>& headers = {});

  const std::string& server() const { return server_; }

 private:
  ApiClient(std::string server, std::string key);
  std::string server_;
  std::string key_;
  void* curl_ = nullptr;  // CURL*, reused across calls for keep-alive
};

}  // namespace nudge::cli
