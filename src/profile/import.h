// Importing contacts from a list (the server side of `nudge import contacts`).
//
// Each row is matched to an existing contact by user id, then normalized email, then E.164
// phone. A match updates the contact (the row's traits win; tags unite); no match creates one
// that records the import, its source and tags. A row matching a contact created earlier by
// the same import is a duplicate inside the file and is reported as merged into it.
//
// Thread-compatible; runs inside a store write.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "profile/applier.h"
#include "store/store.h"

namespace nudge::profile {

struct ImportRow {
  int64_t line = 0;  // the row's line in the client's file, echoed back
  std::optional<std::string> user_id;
  std::optional<std::string> email;  // as written in the file
  std::optional<std::string> phone;  // as written in the file
  std::string traits = "{}";         // JSON object of the row's other columns
};

struct ImportRequest {
  std::string import_id;  // one per run of the importer
  std::optional<std::string> source;
  std::vector<std::string> tags;
  std::vector<ImportRow> rows;
};

enum class ImportOutcome { kCreated, kUpdated, kMerged, kRejected };
std::string_view ImportOutcomeName(ImportOutcome outcome);  // "created", "updated", ...

struct ImportRowResult {
  int64_t line = 0;
  ImportOutcome outcome = ImportOutcome::kRejected;
  store::ContactId contact = 0;
  std::string reason;  // why a row was rejected
};

// `observer` (may be null) is told of each contact created or changed.
Result<std::vector<ImportRowResult>> ImportContacts(store::WriteTxn& txn, store::WorkspaceId ws,
                                                    const ImportRequest& request,
                                                    const ProfileOptions& options, core::Millis now,
                                                    ContactObserver* observer = nullptr);

}  // namespace nudge::profile
