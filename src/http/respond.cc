#include "http/respond.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/crypto.h"

namespace nudge::http {

int HttpStatusOf(Code code) {
  switch (code) {
    case Code::kOk:
      return 200;
    case Code::kInvalidArgument:
      return 400;
    case Code::kNotFound:
      return 404;
    case Code::kAlreadyExists:
      return 409;
    case Code::kUnauthenticated:
      return 401;
    case Code::kPermissionDenied:
      return 403;
    case Code::kTooLarge:
      return 413;
    case Code::kFailedPrecondition:
      return 409;
    case Code::kUnavailable:
      return 503;
    case Code::kInternal:
      return 500;
  }
  return 500;
}

Response ErrorResponse(const Status& status) {
  nlohmann::json body{{"success", false},
                      {"code", std::string(core::CodeName(status.code()))},
                      {"error", status.ToString()}};
  const std::string& where = status.where();
  if (!where.empty()) {
    // "[source:]line:column" is a position in text; anything else names a field.
    auto digits = [](std::string_view s) {
      return !s.empty() && s.size() < 10 && std::all_of(s.begin(), s.end(), [](char c) {
        return isdigit(static_cast<unsigned char>(c));
      });
    };
    const auto last = where.rfind(':');
    const auto prev =
        last == std::string::npos || last == 0 ? std::string::npos : where.rfind(':', last - 1);
    const std::string_view column =
        last == std::string::npos ? "" : std::string_view(where).substr(last + 1);
    const std::string_view line = last == std::string::npos ? ""
                                  : prev == std::string::npos
                                      ? std::string_view(where).substr(0, last)
                                      : std::string_view(where).substr(prev + 1, last - prev - 1);
    if (digits(line) && digits(column)) {
      body["line"] = std::stoi(std::string(line));
      body["column"] = std::stoi(std::string(column));
      if (prev != std::string::npos) body["source"] = where.substr(0, prev);
    } else {
      body["field"] = where;
    }
  }
  Response r = JsonResponse(body, HttpStatusOf(status.code()));
  if (status.code() == Code::kUnauthenticated)
    r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"nudge\"");
  if (status.code() == Code::kUnavailable) r.headers.emplace_back("Retry-After", "1");
  return r;
}

Response JsonResponse(const nlohmann::json& body, int status) {
  Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

std::string BearerToken(const Request& request) {
  const std::string& auth = request.Header("authorization");
  if (auth.size() > 7 && strncasecmp(auth.c_str(), "bearer ", 7) == 0) {
    std::string token = auth.substr(7);
    while (!token.empty() && token.front() == ' ') token.erase(0, 1);
    while (!token.empty() && token.back() == ' ') token.pop_back();
    return token;
  }
  return "";
}

std::optional<std::string> BasicUser(const Request& request) {
  const std::string& auth = request.Header("authorization");
  if (auth.size() <= 6 || strncasecmp(auth.c_str(), "basic ", 6) != 0) return std::nullopt;
  std::string encoded = auth.substr(6);
  while (!encoded.empty() && encoded.front() == ' ') encoded.erase(0, 1);
  while (!encoded.empty() && encoded.back() == ' ') encoded.pop_back();
  auto decoded = core::Base64Decode(encoded);
  if (!decoded) return std::nullopt;
  const auto colon = decoded->find(':');
  return colon == std::string::npos ? *decoded : decoded->substr(0, colon);
}

}  // namespace nudge::http
