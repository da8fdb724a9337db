#include "core/status.h"

namespace nudge::core {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kNotFound:
      return "not_found";
    case Code::kAlreadyExists:
      return "already_exists";
    case Code::kUnauthenticated:
      return "unauthenticated";
    case Code::kPermissionDenied:
      return "permission_denied";
    case Code::kTooLarge:
      return "too_large";
    case Code::kFailedPrecondition:
      return "failed_precondition";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kInternal:
      return "internal";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  if (where_.empty()) return message_;
  return where_ + ": " + message_;
}

Status Status::WithPrefix(std::string_view prefix) const {
  if (ok() || prefix.empty()) return *this;
  std::string where(prefix);
  if (!where_.empty()) {
    if (where_.front() != '[') where += '.';
    where += where_;
  }
  return Status(code_, message_, std::move(where));
}

}  // namespace nudge::core
