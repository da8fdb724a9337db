// Result<T>: a T or the Status that explains why there is none (tl::expected).
//
// NUDGE_TRY(expr) returns early with the error of a failing Status or Result expression.
// NUDGE_ASSIGN_OR_RETURN(lhs, expr) unwraps a Result into lhs or returns its error.
#pragma once

#include <tl/expected.hpp>

#include "core/status.h"

namespace nudge::core {

template <typename T>
using Result = tl::expected<T, Status>;

inline tl::unexpected<Status> Err(Status status) {
  return tl::unexpected<Status>(std::move(status));
}

namespace internal {
inline Status ToStatus(Status status) { return status; }
template <typename T>
Status ToStatus(const Result<T>& result) {
  return result ? Status::Ok() : result.error();
}
}  // namespace internal

}  // namespace nudge::core

namespace nudge {
using core::Err;
using core::Result;
}  // namespace nudge

#define NUDGE_CONCAT_INNER(a, b) a##b
#define NUDGE_CONCAT(a, b) NUDGE_CONCAT_INNER(a, b)

#define NUDGE_TRY(expr)                                                           \
  do {                                                                            \
    ::nudge::Status nudge_try_status = ::nudge::core::internal::ToStatus(expr);   \
    if (!nudge_try_status.ok()) return ::nudge::Err(std::move(nudge_try_status)); \
  } while (0)

#define NUDGE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)      \
  auto tmp = (expr);                                     \
  if (!tmp) return ::nudge::Err(std::move(tmp).error()); \
  lhs = std::move(*tmp)

#define NUDGE_ASSIGN_OR_RETURN(lhs, expr) \
  NUDGE_ASSIGN_OR_RETURN_IMPL(NUDGE_CONCAT(nudge_result_, __LINE__), lhs, expr)
