#include "http/respond.h"

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
    // "12:5" is a position in text; anything else names a field.
    const auto colon = where.find(':');
    bool position = colon != std::string::npos && colon > 0 && colon + 1 < where.size();
    for (size_t i = 0; position && i < where.size(); ++i)
      position = i == colon || isdigit(static_cast<unsigned char>(where[i]));
    if (position) {
      body["line"] = std::stoi(where.substr(0, colon));
      body["column"] = std::stoi(where.substr(colon + 1));
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
