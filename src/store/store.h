// Store: the one place nudge's durable state lives, behind an interface so that SQLite (the
// embedded default) and, later, PostgreSQL implement the same contract.
//
// Writes are functions run on the store's single writer thread inside a transaction that
// is shared with other writes queued at the same moment (group commit). A write's `done`
// callback runs only after its transaction is durably committed (or failed), which is what
// lets the HTTP layer acknowledge an event only once it is on disk. A write runs inside its
// own savepoint, so that one that fails leaves no trace and does not fail its neighbours,
// unless it is queued to share its group's fate (Isolation::kWithGroup, below).
//
// Reads run on a pooled read connection in a snapshot transaction, concurrently with writes.
//
// Thread-safety: Store is thread-safe. ReadTxn/WriteTxn objects belong to the thread that was
// handed them and must not escape the callback.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/clock.h"
#include "core/result.h"

namespace nudge::core {
class MetricsRegistry;
}

namespace nudge::store {

using core::Millis;
using ContactId = int64_t;
using WorkspaceId = int64_t;

struct Workspace {
  WorkspaceId id = 0;
  std::string name;
  std::string write_key_hash;  // SHA-256 hex of the key; keys are never stored in clear
  std::string admin_key_hash;
  Millis created_at = 0;
};

struct Contact {
  ContactId id = 0;
  WorkspaceId workspace = 0;
  std::optional<std::string> user_id;
  std::optional<std::string> email;      // normalized (trimmed, domain lowercased)
  std::optional<std::string> phone;      // E.164
  std::string traits = "{}";             // JSON object; originals of email/phone stay here
  std::string tags = "[]";               // JSON array of strings
  std::optional<std::string> source;     // how the contact first came to us
  std::optional<std::string> import_id;  // the list import that created it, if any
  // First and last seen. Reads widen the stored values with the contact's event times, so
  // storing an event needs no write to the contact.
  Millis created_at = 0;
  Millis last_seen_at = 0;
};

// Identities other than the user id that lead to a contact. Persisted as these strings.
enum class IdentityKind { kAnonymous, kAlias };
std::string_view IdentityKindName(IdentityKind kind);

struct Event {
  int64_t id = 0;  // assigned on insert; increases with insertion order
  WorkspaceId workspace = 0;
  ContactId contact = 0;
  std::string message_id;
  std::string type;  // identify, track, page, screen, group, alias
  std::string name;  // "Order Completed", "Page Viewed", ... (empty for identify)
  Millis timestamp = 0;
  Millis received_at = 0;
  std::string body;  // the message as accepted, as one JSON object
};

// Who an event came from: a client (an SDK, the API) or nudge itself (Segment Entered, ...,
// whose messageIds start with the reserved "nudge:").
enum class EventOrigin { kAll = 0, kClient = 1, kNudge = 2 };
inline constexpr std::string_view kDerivedPrefix = "nudge:";
// Derived events whose messageId ends in what caused them (an event's id, a time and a
// sequence number) are unique by construction; the store does not check them for duplicates
// (the SQLite store leaves them out of its messageId index, migration 7).
inline constexpr std::string_view kUncheckedDerivedPrefix = "nudge:~";

struct Definition {
  WorkspaceId workspace = 0;
  std::string kind;  // "segment", "scoring", "stages", ...
  std::string id;
  int64_t version = 0;  // 1 on creation, +1 on each change
  std::string body;     // JSON
  Millis created_at = 0;
  Millis updated_at = 0;
};

struct SegmentMember {
  WorkspaceId workspace = 0;
  std::string segment;
  ContactId contact = 0;
  Millis since = 0;
};

struct StageEntry {
  ContactId contact = 0;
  std::string stage;
  std::string previous;  // history only
  Millis at = 0;
};

// One contact's way through one version of a journey.
struct Instance {
  int64_t id = 0;
  WorkspaceId workspace = 0;
  std::string journey;
  int64_t version = 0;
  ContactId contact = 0;
  std::string status;  // active, completed, exited, converted
  std::string step;    // the current step ("" once ended)
  Millis step_since = 0;
  std::optional<Millis> wake_at;  // the pending timer, if any
  Millis entered_at = 0;
  Millis updated_at = 0;
  std::string trigger_key;  // what started it (an event id, a date), for deduplication
  std::string data = "{}";  // JSON: the triggering event, split choices, wait deadlines
};

struct JourneyRecord {
  WorkspaceId workspace = 0;
  std::string journey;
  int64_t version = 0;  // the current version
  std::string status;   // active, paused, archived
  Millis updated_at = 0;
};

// An outbound message in the outbox (channel delivery picks it up).
struct Message {
  int64_t id = 0;
  WorkspaceId workspace = 0;
  ContactId contact = 0;
  std::string journey;
  int64_t version = 0;
  std::string step;
  int64_t instance = 0;
  std::string channel;  // email, sms, push, webhook
  std::string template_id;
  std::string status;  // queued, sending, sent, failed, suppressed, deferred_quiet_hours, capped,
                       // skipped_late, cancelled (its journey instance ended first)
  std::string idempotency_key;
  std::string payload = "{}";  // JSON
  Millis created_at = 0;
  Millis send_at = 0;  // not before
  Millis updated_at = 0;
  std::string detail;  // why a message was capped, skipped, failed
  int64_t attempts = 0;
  std::string message_id_header;  // the Message-ID it was sent with
  std::string recipient;          // the address it went to
};

// Where a read of due messages is (ReadTxn::DueMessages): among those held for quiet hours,
// after (send_at, id); or, once they are read, among the queued ones after id.
struct DueCursor {
  bool queued = false;
  Millis send_at = std::numeric_limits<Millis>::min();
  int64_t id = 0;
};

struct Subscription {
  WorkspaceId workspace = 0;
  ContactId contact = 0;
  std::string channel;  // email, sms, push
  std::string topic;    // "" for the channel itself
  std::string status;   // subscribed, unsubscribed, pending (double opt-in)
  Millis updated_at = 0;
};

// One change of consent: when, how, from where (the consent record).
struct ConsentRecord {
  Subscription subscription;
  std::string source;  // api, import, unsubscribe_link, one_click, preference_page, confirm_link,
                       // sms_stop, complaint, journey, ...
  std::string ip;
  std::string detail;
};

struct Suppression {
  WorkspaceId workspace = 0;
  std::string channel;  // email, sms
  std::string address;  // lowercased email or E.164 phone
  std::string reason;   // manual, unsubscribed, hard_bounce, complaint
  Millis created_at = 0;
  std::string detail;
};

struct MessageFilter {
  WorkspaceId workspace = 0;
  std::optional<ContactId> contact;
  std::optional<std::string> journey;
  std::optional<std::string> status;
  int64_t before_id = 0;  // paging: ids below this (0 = from the newest)
  int limit = 50;
};

struct StepCount {
  std::string step;
  std::string outcome;  // entered, completed, exited, converted, skipped
  int64_t count = 0;
};

class ReadTxn {
 public:
  virtual ~ReadTxn() = default;

  virtual Result<std::vector<Workspace>> ListWorkspaces() = 0;

  virtual Result<std::optional<Contact>> GetContact(ContactId id) = 0;
  // By user id, or by a user id that was aliased to the contact.
  virtual Result<std::optional<Contact>> FindContactByUserId(WorkspaceId ws,
                                                             std::string_view user_id) = 0;
  // The id alone (no row read): by user id, then by alias.
  virtual Result<std::optional<ContactId>> FindContactIdByUserId(WorkspaceId ws,
                                                                 std::string_view user_id) = 0;
  virtual Result<std::optional<ContactId>> FindContactByAnonymousId(WorkspaceId ws,
                                                                    std::string_view anon) = 0;
  // Case-insensitive on the whole address. The oldest contact wins when several match.
  virtual Result<std::optional<Contact>> FindContactByEmail(WorkspaceId ws,
                                                            std::string_view email) = 0;
  virtual Result<std::optional<Contact>> FindContactByPhone(WorkspaceId ws,
                                                            std::string_view e164) = 0;
  virtual Result<std::vector<std::string>> ListIdentities(ContactId id, IdentityKind kind) = 0;
  // Contacts with id > after, ascending by id.
  virtual Result<std::vector<Contact>> ListContacts(WorkspaceId ws, ContactId after, int limit) = 0;
  virtual Result<int64_t> CountContacts(WorkspaceId ws) = 0;
  // Newest first (by timestamp, then insertion order).
  virtual Result<std::vector<Event>> ListEvents(ContactId id, int limit,
                                                EventOrigin origin = EventOrigin::kAll) = 0;
  virtual Result<int64_t> CountEvents(WorkspaceId ws, EventOrigin origin = EventOrigin::kAll) = 0;
  // One event by its row id (a message's trigger event); nullopt when erased.
  virtual Result<std::optional<Event>> GetEvent(int64_t id) = 0;
  // True when this workspace already stored a message with this id (false for ids under
  // kUncheckedDerivedPrefix, which are not checked).
  virtual Result<bool> HasMessage(WorkspaceId ws, std::string_view message_id) = 0;

  // Streams every contact (all workspaces) in id order.
  virtual Status ScanContacts(const std::function<Status(const Contact&)>& fn) = 0;
  // Streams events with after < id <= upto in id order (upto 0: no bound).
  virtual Status ScanEvents(int64_t after, int64_t upto,
                            const std::function<Status(const Event&)>& fn) = 0;
  virtual Result<int64_t> MaxEventId() = 0;
  // A workspace's events with id > after, in id order (export).
  virtual Result<std::vector<Event>> EventsAfter(WorkspaceId ws, int64_t after, int limit,
                                                 EventOrigin origin) = 0;

  // Definitions: segments, scoring, stages (and later journeys, templates), as JSON.
  virtual Result<std::optional<Definition>> GetDefinition(WorkspaceId ws, std::string_view kind,
                                                          std::string_view id) = 0;
  virtual Result<std::vector<Definition>> ListDefinitions(WorkspaceId ws,
                                                          std::string_view kind) = 0;
  // All workspaces' definitions of a kind (start-up).
  virtual Result<std::vector<Definition>> AllDefinitions(std::string_view kind) = 0;

  // Segment members, by contact id, from `after`.
  virtual Result<std::vector<SegmentMember>> ListSegmentMembers(WorkspaceId ws,
                                                                std::string_view segment,
                                                                ContactId after, int limit) = 0;
  virtual Status ScanSegmentMembers(const std::function<Status(const SegmentMember&)>& fn) = 0;
  virtual Result<std::vector<SegmentMember>> SegmentsOfContact(ContactId id) = 0;

  virtual Result<std::optional<StageEntry>> GetContactStage(ContactId id) = 0;
  virtual Result<std::vector<StageEntry>> StageHistory(ContactId id) = 0;
  virtual Status ScanContactStages(const std::function<Status(const StageEntry&)>& fn) = 0;

  // ---- journeys ----
  virtual Result<std::vector<JourneyRecord>> ListJourneys(WorkspaceId ws) = 0;  // 0 = all
  virtual Result<std::optional<std::string>> GetJourneyVersion(WorkspaceId ws,
                                                               std::string_view journey,
                                                               int64_t version) = 0;
  virtual Result<std::optional<Instance>> GetInstance(int64_t id) = 0;
  // A journey's instances, newest first: ids below `before_id` (0: from the newest).
  virtual Result<std::vector<Instance>> ListInstances(WorkspaceId ws, std::string_view journey,
                                                      std::optional<ContactId> contact, int limit,
                                                      int64_t before_id) = 0;
  // What a journey's entry rules ask of the contact's past instances of it (any version, any
  // status), each from the index alone: whether there is one, whether one was started by
  // `trigger_key`, and (with want_last) when the newest was entered. A contact's history is
  // never read whole: an `every_time` journey may hold thousands of ended instances of one.
  struct EntryPast {
    bool any = false;
    bool same_trigger = false;
    Millis last_entered_at = 0;
  };
  virtual Result<EntryPast> EntryPastOf(ContactId contact, std::string_view journey,
                                        std::string_view trigger_key, bool want_last) = 0;
  virtual Status ScanActiveInstances(const std::function<Status(const Instance&)>& fn) = 0;
  virtual Result<std::vector<StepCount>> JourneyStepCounts(WorkspaceId ws,
                                                           std::string_view journey) = 0;
  // An instance's way through its journey: (step, outcome, at) in order.
  virtual Result<std::vector<std::tuple<std::string, std::string, Millis>>> InstanceSteps(
      int64_t instance) = 0;
  virtual Result<std::vector<Message>> ListMessages(const MessageFilter& filter) = 0;
  // ---- consent ----
  virtual Result<std::vector<Subscription>> SubscriptionsOf(ContactId id) = 0;
  virtual Status ScanSubscriptions(const std::function<Status(const Subscription&)>& fn) = 0;
  virtual Result<std::vector<ConsentRecord>> ConsentHistory(ContactId id) = 0;
  virtual Result<std::optional<Suppression>> FindSuppression(WorkspaceId ws,
                                                             std::string_view channel,
                                                             std::string_view address) = 0;
  virtual Result<std::vector<Suppression>> ListSuppressions(WorkspaceId ws,
                                                            std::string_view after_address,
                                                            int limit) = 0;
  virtual Result<std::optional<std::string>> GetSecret(WorkspaceId ws, std::string_view name) = 0;
  // A position the store keeps in step with its writes (kInboxAppliedMark); 0 when never set.
  virtual Result<int64_t> GetMark(std::string_view name) = 0;
  virtual Result<std::optional<Message>> GetMessage(int64_t id) = 0;
  // The message whose Message-ID header is this (bounces and complaints name it).
  virtual Result<std::optional<Message>> FindMessageByHeader(std::string_view message_id) = 0;
  // Messages due for delivery (send_at <= now), a page at a time: first those deferred for
  // quiet hours, by the time they were held until then id, then the queued ones by id. The
  // cursor starts default-constructed; each call moves it past the page it returns, and an
  // empty page means none are left.
  virtual Result<std::vector<Message>> DueMessages(Millis now, int limit, DueCursor& cursor) = 0;
  // Messages to the contact on the channel that went out (sending, sent) since `since`, other
  // than `except`: what frequency caps count at send time.
  virtual Result<int64_t> CountSentMessages(ContactId contact, std::string_view channel,
                                            Millis since, int64_t except) = 0;

  // Messages to the contact on the channel created at or after `since` that count towards
  // frequency caps (queued, sending, sent, deferred).
  virtual Result<int64_t> CountRecentMessages(ContactId contact, std::string_view channel,
                                              Millis since) = 0;
};

class WriteTxn : public ReadTxn {
 public:
  virtual Result<WorkspaceId> InsertWorkspace(const Workspace& ws) = 0;
  virtual Status UpdateWorkspaceKeys(WorkspaceId id, std::string_view write_key_hash,
                                     std::string_view admin_key_hash) = 0;

  virtual Result<ContactId> InsertContact(const Contact& contact) = 0;
  // Writes every field of the contact with this id.
  virtual Status UpdateContact(const Contact& contact) = 0;
  // Erases the contact, its identities and its events.
  virtual Status DeleteContact(ContactId id) = 0;
  // Points an identity at a contact, moving it if it pointed elsewhere.
  virtual Status LinkIdentity(WorkspaceId ws, IdentityKind kind, std::string_view value,
                              ContactId id) = 0;
  // Moves `from`'s events and identities to `into`, records the merge, deletes `from`.
  // The caller merges the contacts' fields (traits, tags, ...) into `into` itself.
  virtual Status MergeContacts(ContactId from, ContactId into, Millis at) = 0;

  // Inserts the event and sets event.id. Returns false, inserting nothing, when the
  // workspace already holds a message with the same message_id.
  virtual Result<bool> InsertEvent(Event& event) = 0;

  // Stores a definition, returning its new version (1 when new, unchanged when the body is).
  virtual Result<int64_t> PutDefinition(WorkspaceId ws, std::string_view kind, std::string_view id,
                                        std::string_view body, Millis now) = 0;
  virtual Result<bool> DeleteDefinition(WorkspaceId ws, std::string_view kind,
                                        std::string_view id) = 0;

  virtual Status AddSegmentMember(const SegmentMember& member) = 0;
  virtual Status RemoveSegmentMember(WorkspaceId ws, std::string_view segment, ContactId id) = 0;
  virtual Status ClearSegment(WorkspaceId ws, std::string_view segment) = 0;

  // Sets the contact's current stage and appends to its history.
  virtual Status SetContactStage(const StageEntry& entry) = 0;

  // ---- journeys ----
  virtual Status PutJourneyVersion(WorkspaceId ws, std::string_view journey, int64_t version,
                                   std::string_view body, Millis now) = 0;
  virtual Status PutJourney(const JourneyRecord& record) = 0;
  virtual Result<int64_t> InsertInstance(const Instance& instance) = 0;
  virtual Status UpdateInstance(const Instance& instance) = 0;
  // Moves a merged contact's instances to the surviving contact.
  virtual Status MoveInstances(ContactId from, ContactId into) = 0;
  virtual Status LogStep(const Instance& instance, std::string_view step, std::string_view outcome,
                         Millis at) = 0;
  // Inserts the message unless the workspace has one with the same idempotency key; returns
  // whether it was inserted (and sets message.id).
  virtual Result<bool> InsertMessage(Message& message) = 0;
  // Changes the status only when it is still `from`; returns whether it did.
  virtual Result<bool> UpdateMessageStatusIf(int64_t id, std::string_view from,
                                             std::string_view status, Millis now,
                                             std::string_view detail) = 0;
  // Messages left in `sending` by a crash go back to `queued` (they are sent again with the same
  // Message-ID: the one window where a duplicate may come from). Returns how many.
  virtual Result<int64_t> RequeueSending(Millis now) = 0;
  virtual Status UpdateMessageStatus(int64_t id, std::string_view status, Millis now,
                                     std::string_view detail) = 0;
  // A delivery attempt's bookkeeping: status, the next try, the attempt count, the headers.
  virtual Status UpdateMessageDelivery(const Message& message) = 0;

  // ---- consent ----
  // Sets a subscription and appends the consent record.
  virtual Status SetSubscription(const ConsentRecord& record) = 0;
  virtual Status AddSuppression(const Suppression& s) = 0;
  virtual Result<bool> RemoveSuppression(WorkspaceId ws, std::string_view channel,
                                         std::string_view address) = 0;
  virtual Status PutSecret(WorkspaceId ws, std::string_view name, std::string_view value) = 0;
  virtual Status SetMark(std::string_view name, int64_t value) = 0;
  // Counts a bounce for the contact; returns the soft-bounce count after it.
  virtual Result<int64_t> CountBounce(ContactId id, bool hard, Millis at) = 0;

  // Runs after the transaction holding this write commits; never if it rolls back.
  virtual void OnCommit(std::function<void()> fn) = 0;
  // Runs if this write is rolled back (its own failure, or its group's failed commit), so that
  // state kept in memory beside the store can be put right.
  virtual void OnRollback(std::function<void()> fn) = 0;
};

struct StoreStats {
  uint64_t queued_writes = 0;  // writes waiting for the writer thread
  uint64_t commits = 0;
  uint64_t writes_committed = 0;
};

struct SqliteOptions {
  std::string path;  // the database file; its directory must exist
  int read_connections = 4;
  // Tracking requests reach the store in groups as large as this while a backlog drains:
  // applying 5 s of batch traffic went at 43-47k events/s with groups of 512, 52-53k with
  // 2,048, and no faster with 4,096 or 8,192 (bench/README.md).
  int max_writes_per_commit = 2048;
  // Where commit latency and queue depth are reported; may be null.
  core::MetricsRegistry* metrics = nullptr;
};

class Store {
 public:
  using WriteFn = std::function<Status(WriteTxn&)>;
  using DoneFn = std::function<void(Status)>;

  virtual ~Store() = default;

  // How a failed write is undone.
  //  kAlone: the write runs in a savepoint of its own, so its failure undoes only it and the
  //    rest of its group commits.
  //  kWithGroup: no savepoint of its own. A savepoint costs a copy of every database page
  //    the write touches (for an event that starts a journey, a fifth of the writer's
  //    instructions and a tenth of its time). Should the write fail, its whole group rolls
  //    back, as when a commit fails: the failed write is done with its error, every other
  //    write of the group with kUnavailable (those after it never ran), and the caller hands
  //    them again. A group holds writes of one kind only, in the order they were queued.
  enum class Isolation { kAlone, kWithGroup };

  // Queues fn for the writer thread; done(status) runs on the writer thread after the commit
  // (status is fn's failure, or the commit's). done must be quick and must not write.
  // After Close(), done is called at once with kUnavailable.
  virtual void Write(WriteFn fn, DoneFn done, Isolation isolation) = 0;
  void Write(WriteFn fn, DoneFn done) { Write(std::move(fn), std::move(done), Isolation::kAlone); }
  // Write and wait for the commit.
  Status WriteSync(WriteFn fn);

  virtual Status Read(const std::function<Status(ReadTxn&)>& fn) = 0;
  // ReadTxn::GetMark in a read of its own.
  Result<int64_t> ReadMark(std::string_view name);

  // Commits everything queued, then stops the writer. Idempotent.
  virtual void Close() = 0;

  virtual StoreStats Stats() const = 0;
};

// Opens (creating and migrating when needed) a SQLite store in WAL mode, synchronous=FULL.
Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options);

}  // namespace nudge::store
