#include "store/store.h"

#include <future>

namespace nudge::store {

std::string_view IdentityKindName(IdentityKind kind) {
  switch (kind) {
    case IdentityKind::kAnonymous:
      return "anonymous";
    case IdentityKind::kAlias:
      return "alias";
  }
  return "anonymous";
}

Status Store::WriteSync(WriteFn fn) {
  std::promise<Status> promise;
  auto future = promise.get_future();
  Write(std::move(fn), [&promise](Status status) { promise.set_value(std::move(status)); });
  return future.get();
}

}  // namespace nudge::store
