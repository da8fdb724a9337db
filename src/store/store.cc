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

Result<int64_t> Store::ReadMark(std::string_view name) {
  int64_t mark = 0;
  NUDGE_TRY(Read([&](ReadTxn& t) -> Status {
    NUDGE_ASSIGN_OR_RETURN(mark, t.GetMark(name));
    return Status::Ok();
  }));
  return mark;
}

}  // namespace nudge::store
