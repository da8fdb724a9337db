// Status: the outcome of an operation that can fail, as a value (never an exception).
//
// A Status carries a code, a human message and, for input errors, where the problem is
// (`where`: a field path such as "batch[2].userId", or "line:column" for text input).
// Status is a small value type; copying it is cheap. Thread-compatible.
#pragma once

#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace nudge::core {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // the caller sent something malformed
  kNotFound,            // the thing asked for does not exist
  kAlreadyExists,       // a unique name is taken
  kUnauthenticated,     // no key, or a key we do not know
  kPermissionDenied,    // a known key that may not do this
  kTooLarge,            // a body or value past a documented limit
  kFailedPrecondition,  // the state does not allow this now
  kUnavailable,         // shutting down, overloaded; retry later
  kInternal,            // a bug or an unexpected failure of a dependency
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message, std::string where = {})
      : code_(code), message_(std::move(message)), where_(std::move(where)) {}

  // Lets NUDGE_TRY return early from functions that return a plain Status.
  Status(tl::unexpected<Status> error) : Status(std::move(error.value())) {}  // NOLINT

  static Status Ok() { return Status(); }
  static Status Invalid(std::string message, std::string where = {}) {
    return Status(Code::kInvalidArgument, std::move(message), std::move(where));
  }
  static Status NotFound(std::string message) {
    return Status(Code::kNotFound, std::move(message));
  }
  static Status Internal(std::string message) {
    return Status(Code::kInternal, std::move(message));
  }
  static Status Unavailable(std::string message) {
    return Status(Code::kUnavailable, std::move(message));
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::string& where() const { return where_; }

  // "where: message" when a place is known, else the message.
  std::string ToString() const;

  // Prefixes the place, e.g. Status for "userId" nested under "batch[3]" -> "batch[3].userId".
  Status WithPrefix(std::string_view prefix) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  std::string where_;
};

}  // namespace nudge::core

namespace nudge {
using core::Code;
using core::Status;
}  // namespace nudge
