// Turning Status values and JSON documents into HTTP responses: the one place a Status
// becomes an HTTP code. Pure functions; thread-safe.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "core/status.h"
#include "http/server.h"

namespace nudge::http {

int HttpStatusOf(Code code);

// {"success":false,"code":"invalid_argument","error":"batch[1].userId: ...",
//  "field":"batch[1].userId"} -- or "line"/"column" instead of "field" for text positions.
Response ErrorResponse(const Status& status);

Response JsonResponse(const nlohmann::json& body, int status = 200);

// The token of "Authorization: Bearer <token>", or "".
std::string BearerToken(const Request& request);
// The user name of "Authorization: Basic base64(user:password)", or nullopt.
std::optional<std::string> BasicUser(const Request& request);

}  // namespace nudge::http
