// The statements that read pages of the outbox and of journey instances, newest first (the
// admin API) or oldest first (delivery's due messages, in the two parts below). Each filter has
// a statement of its own so that a page is read from an index in its order and reads about a page
// of rows, never a sort of every row that matches: at two million messages one statement for every
// filter sorted them all for each page (0.5-1.1 s; delivery's read of due messages 0.2-0.3 s).
// sqlite_store_test checks each statement's query plan, and that of a contact's read (below).
#ifndef NUDGE_STORE_SQLITE_LISTING_SQL_H_
#define NUDGE_STORE_SQLITE_LISTING_SQL_H_

#include <array>

namespace nudge::store::sqlite {

// A contact's first and last seen times widen with its events' times; they are read from the
// events index rather than written on every event, which keeps ingest to one insert per event.
// Events nudge derived do not count: SQLite walks the index from either end to the first
// client event, passing over only the derived events before (after) the first (last) one.
#define NUDGE_CONTACT_COLUMNS                                                                    \
  "c.id, c.ws, c.user_id, c.email, c.phone, c.traits, c.tags, c.source, c.import_id, "           \
  "min(c.created_at, coalesce((SELECT min(timestamp) FROM events WHERE contact_id = c.id AND "   \
  "substr(message_id, 1, 6) <> 'nudge:'), "                                                      \
  "c.created_at)), "                                                                             \
  "max(c.last_seen_at, coalesce((SELECT max(timestamp) FROM events WHERE contact_id = c.id AND " \
  "substr(message_id, 1, 6) <> 'nudge:'), "                                                      \
  "c.last_seen_at))"

inline constexpr const char* kContactById =
    "SELECT " NUDGE_CONTACT_COLUMNS " FROM contacts c WHERE c.id = ?";

#define NUDGE_MESSAGE_COLUMNS                                                             \
  "id, ws, contact_id, coalesce(journey, ''), coalesce(version, 0), coalesce(step, ''), " \
  "coalesce(instance_id, 0), channel, coalesce(template, ''), status, idempotency_key, "  \
  "payload, created_at, send_at, updated_at, coalesce(detail, ''), attempts, "            \
  "coalesce(message_id_header, ''), coalesce(recipient, '')"

#define NUDGE_INSTANCE_COLUMNS                                                            \
  "id, ws, journey, version, contact_id, status, coalesce(step, ''), "                    \
  "coalesce(step_since, 0), wake_at, entered_at, updated_at, coalesce(trigger_key, ''), " \
  "data"

// Pages of a journey's instances; ?: ws, journey, below (ids under it), limit.
inline constexpr const char* kInstancesOfJourney =
    "SELECT " NUDGE_INSTANCE_COLUMNS
    " FROM journey_instances WHERE ws = ? AND journey = ? AND id < ? ORDER BY id DESC LIMIT ?";
// ... of one contact's: contact, journey, ws, below, limit. Sorted: the index by contact serves
// the entry rules (keyed by trigger), and one contact's instances of a journey are a sort of
// the few the listing reads from it.
inline constexpr const char* kInstancesOfJourneyAndContact =
    "SELECT " NUDGE_INSTANCE_COLUMNS
    " FROM journey_instances WHERE contact_id = ? AND journey = ? AND +ws = ? AND id < ? "
    "ORDER BY id DESC LIMIT ?";

// What a journey's entry rules ask of a contact's past instances (?1 contact, ?2 journey,
// ?3 trigger key, ?4 whether the newest entry is wanted): whether there is one, whether one was
// started by this trigger, when the newest was entered. Each from the index alone, without
// reading a row: an `every_time` journey may hold thousands of one contact's ended instances.
inline constexpr const char* kEntryPast =
    "SELECT EXISTS(SELECT 1 FROM journey_instances WHERE contact_id = ?1 AND journey = ?2), "
    "EXISTS(SELECT 1 FROM journey_instances WHERE contact_id = ?1 AND journey = ?2 AND "
    "trigger_key = ?3), CASE WHEN ?4 THEN (SELECT max(entered_at) FROM journey_instances "
    "WHERE contact_id = ?1 AND journey = ?2) END";

// Pages of messages. A contact's (few, sorted): contact, ws, has journey, journey, has status,
// status, below, limit.
inline constexpr const char* kMessagesOfContact =
    "SELECT " NUDGE_MESSAGE_COLUMNS
    " FROM messages WHERE contact_id = ? AND +ws = ? AND (? = 0 OR journey = ?) "
    "AND (? = 0 OR status = ?) AND id < ? ORDER BY id DESC LIMIT ?";
// A journey's: ws, journey, has status, status, below, limit.
inline constexpr const char* kMessagesOfJourney =
    "SELECT " NUDGE_MESSAGE_COLUMNS
    " FROM messages WHERE ws = ? AND journey = ? AND (? = 0 OR status = ?) AND id < ? "
    "ORDER BY id DESC LIMIT ?";
// A status's: status, ws, below, limit.
inline constexpr const char* kMessagesWithStatus =
    "SELECT " NUDGE_MESSAGE_COLUMNS
    " FROM messages WHERE status = ? AND +ws = ? AND id < ? ORDER BY id DESC LIMIT ?";
// All of a workspace's: ws, below, limit.
inline constexpr const char* kMessagesOfWorkspace =
    "SELECT " NUDGE_MESSAGE_COLUMNS
    " FROM messages WHERE +ws = ? AND id < ? ORDER BY id DESC LIMIT ?";

// Due messages, read in two parts so that neither sorts: those held for quiet hours whose time
// has come, by that time then id (?1 now, after (?2 send_at, ?3 id), ?4 limit), from the
// partial index that holds only them; then the queued ones by id (?1 after this id, ?2 now,
// ?3 limit).
inline constexpr const char* kDueDeferredMessages =
    "SELECT " NUDGE_MESSAGE_COLUMNS
    " FROM messages INDEXED BY messages_deferred WHERE status = 'deferred_quiet_hours' AND "
    "send_at <= ?1 AND (send_at, id) > (?2, ?3) ORDER BY send_at, id LIMIT ?4";
inline constexpr const char* kDueQueuedMessages =
    "SELECT " NUDGE_MESSAGE_COLUMNS
    " FROM messages WHERE status = 'queued' AND id > ?1 AND send_at <= ?2 ORDER BY id LIMIT ?3";

struct ListingStatement {
  const char* name;
  const char* sql;
  bool sorts;  // sorts the rows it selects (a contact's few messages)
};
inline constexpr std::array<ListingStatement, 8> kListingStatements{{
    {"instances of a journey", kInstancesOfJourney, false},
    {"instances of a journey and contact", kInstancesOfJourneyAndContact, true},
    {"messages of a contact", kMessagesOfContact, true},
    {"messages of a journey", kMessagesOfJourney, false},
    {"messages with a status", kMessagesWithStatus, false},
    {"messages of a workspace", kMessagesOfWorkspace, false},
    {"due messages held for quiet hours", kDueDeferredMessages, false},
    {"due queued messages", kDueQueuedMessages, false},
}};

}  // namespace nudge::store::sqlite

#endif  // NUDGE_STORE_SQLITE_LISTING_SQL_H_
