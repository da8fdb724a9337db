// The SQLite schema as an ordered list of migrations. PRAGMA user_version records how many
// have been applied; a migration is never edited once released, only followed by another.
#pragma once

#include "store/sqlite/db.h"

namespace nudge::store::sqlite {

// Applies the migrations this database has not seen yet, each in its own transaction.
// Refuses a database written by a newer nudge.
Status Migrate(Db& db);

}  // namespace nudge::store::sqlite
