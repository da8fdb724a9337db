#include "ingest/parser.h"

#include <simdjson.h>

#include <array>
#include <charconv>

#include "core/crypto.h"
#include "core/json.h"
#include "core/time.h"
#include "ingest/json_error.h"

namespace nudge::ingest {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

struct BatchDefaults {
  std::optional<Millis> sent_at;
  std::optional<element> context;
  std::optional<element> integrations;
};

std::string_view TypeName(element_type t) {
  switch (t) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "a boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "a value";
}

Status WrongType(const char* field, const char* want, element_type got) {
  return Status::Invalid(std::string("must be ") + want + ", not " + std::string(TypeName(got)),
                         field);
}

std::optional<element> Field(object obj, std::string_view key) {
  element value;
  if (obj.at_key(key).get(value) != simdjson::SUCCESS) return std::nullopt;
  if (value.type() == element_type::NULL_VALUE) return std::nullopt;
  return value;
}

// A message's fields that the checks read, found in one pass over the message (each lookup
// by name would be a pass of its own). Like at_key, the first of duplicate keys counts; a
// null value counts as absent.
class Fields {
 public:
  explicit Fields(object obj) : obj_(obj) {
    for (auto [key, value] : obj) {
      const int i = Index(key);
      if (i < 0 || (seen_ & (1u << i))) continue;
      seen_ |= 1u << i;
      if (value.type() != element_type::NULL_VALUE) slots_[i] = value;
    }
  }

  std::optional<element> Get(std::string_view key) const {
    const int i = Index(key);
    return i < 0 ? Field(obj_, key) : slots_[i];
  }
  object obj() const { return obj_; }

 private:
  static int Index(std::string_view key) {
    auto is = [&](std::string_view k, int i) { return key == k ? i : -1; };
    switch (key.size()) {
      case 4:
        return key == "type" ? 0 : is("name", 1);
      case 5:
        return is("event", 2);
      case 6:
        return key == "userId" ? 3 : key == "sentAt" ? 4 : is("traits", 5);
      case 7:
        return key == "context" ? 6 : is("groupId", 7);
      case 9:
        return key == "messageId" ? 8 : is("timestamp", 9);
      case 10:
        return key == "properties" ? 10 : is("previousId", 11);
      case 11:
        return is("anonymousId", 12);
      case 12:
        return is("integrations", 13);
      case 17:
        return is("originalTimestamp", 14);
      default:
        return -1;
    }
  }

  object obj_;
  uint32_t seen_ = 0;
  std::array<std::optional<element>, 15> slots_{};
};

std::optional<element> Field(const Fields& fields, std::string_view key) { return fields.Get(key); }

// An identifier: a non-empty string, or an integer (SDKs in typed languages send numbers).
Result<std::optional<std::string>> IdField(const Fields& obj, const char* key,
                                           const Limits& limits) {
  auto value = Field(obj, key);
  if (!value) return std::optional<std::string>();
  std::string out;
  switch (value->type()) {
    case element_type::STRING: {
      std::string_view s;
      s = std::string_view(*value);
      out.assign(s);
      break;
    }
    case element_type::INT64:
      out = std::to_string(int64_t(*value));
      break;
    case element_type::UINT64:
      out = std::to_string(uint64_t(*value));
      break;
    default:
      return Err(WrongType(key, "a string", value->type()));
  }
  if (out.size() > limits.max_id_bytes)
    return Err(
        Status::Invalid("is longer than " + std::to_string(limits.max_id_bytes) + " bytes", key));
  if (out.empty()) return std::optional<std::string>();
  return std::optional<std::string>(std::move(out));
}

template <typename Obj>
Result<std::optional<Millis>> TimeField(const Obj& obj, const char* key) {
  auto value = Field(obj, key);
  if (!value) return std::optional<Millis>();
  if (value->type() != element_type::STRING)
    return Err(WrongType(key, "an ISO-8601 string", value->type()));
  std::string_view s;
  s = std::string_view(*value);
  auto ms = core::ParseIso8601(s);
  if (!ms) return Err(Status::Invalid(ms.error().message(), key));
  return std::optional<Millis>(*ms);
}

template <typename Obj>
Status RequireObject(const Obj& obj, const char* key) {
  auto value = Field(obj, key);
  if (value && value->type() != element_type::OBJECT)
    return WrongType(key, "an object", value->type());
  return Status::Ok();
}

void AppendKey(std::string& out, std::string_view key) {
  if (out.size() > 1) out += ',';
  core::AppendJsonString(out, key);
  out += ':';
}

void AppendRaw(std::string& out, std::string_view key, const element& value) {
  AppendKey(out, key);
  out += simdjson::minify(value);
}

void AppendStr(std::string& out, std::string_view key, std::string_view value) {
  AppendKey(out, key);
  core::AppendJsonString(out, value);
}

bool IsOneOf(std::string_view key, std::initializer_list<std::string_view> keys) {
  for (auto k : keys)
    if (k == key) return true;
  return false;
}

size_t JsonStringSize(std::string_view s) {
  size_t n = s.size() + 2;
  for (const unsigned char c : s) {
    if (c == '"' || c == '\\') {
      n += 1;
    } else if (c < 0x20) {
      n += 5;  // \u00XX (a few have two-character escapes; the bound need not be exact)
    }
  }
  return n;
}

template <typename T>
size_t DecimalSize(T v) {
  char buf[32];
  return static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, v).ptr - buf);
}

// The size of a value written as minified JSON: what the per-message limit measures. Computed
// from the parsed value, without writing it, so that a request can be checked on the HTTP
// thread and its messages built later. Never more than the value's text as sent, but for a
// number in exponent form (1e5 measures as 1e+05), so a body within the limit is not measured.
size_t MinifiedSize(const element& e) {
  switch (e.type()) {
    case element_type::ARRAY: {
      size_t n = 2, count = 0;
      for (element item : simdjson::dom::array(e)) {
        n += MinifiedSize(item);
        ++count;
      }
      return n + (count > 0 ? count - 1 : 0);
    }
    case element_type::OBJECT: {
      size_t n = 2, count = 0;
      for (auto [key, value] : object(e)) {
        n += JsonStringSize(key) + 1 + MinifiedSize(value);
        ++count;
      }
      return n + (count > 0 ? count - 1 : 0);
    }
    case element_type::STRING:
      return JsonStringSize(std::string_view(e));
    case element_type::INT64:
      return DecimalSize(int64_t(e));
    case element_type::UINT64:
      return DecimalSize(uint64_t(e));
    case element_type::DOUBLE:
      return DecimalSize(double(e));
    case element_type::BOOL:
      return bool(e) ? 4 : 5;
    case element_type::NULL_VALUE:
      return 4;
  }
  return 0;
}

// A page or screen call's properties, completed from context.page the way analytics.js
// fills them, so `properties.path` works whichever SDK sent the view.
std::string PageProperties(const Fields& msg, const std::optional<element>& context,
                           const std::optional<std::string>& name) {
  std::string out = "{";
  std::optional<object> props;
  if (auto p = Field(msg, "properties"); p && p->type() == element_type::OBJECT) props = object(*p);
  if (props) {
    for (auto [key, value] : *props) AppendRaw(out, key, value);
  }
  auto has = [&](std::string_view key) {
    element v;
    return props && props->at_key(key).get(v) == simdjson::SUCCESS;
  };
  if (name && !has("name")) AppendStr(out, "name", *name);
  if (context && context->type() == element_type::OBJECT) {
    element page;
    if (object(*context).at_key("page").get(page) == simdjson::SUCCESS &&
        page.type() == element_type::OBJECT) {
      for (auto [key, value] : object(page)) {
        if (IsOneOf(key, {"path", "url", "title", "referrer", "search"}) && !has(key))
          AppendRaw(out, key, value);
      }
    }
  }
  out += '}';
  return out;
}

// Checks one message and, when `build` is set, fills in the whole Message (its stored body
// included); otherwise only what the checks need. The checks are the same either way, so a
// message that passes without `build` passes with it. `measure`: check its size (needed only
// when the body it came in is larger than a message may be).
Result<Message> ParseMessage(element el, std::optional<MessageType> implied,
                             const BatchDefaults& defaults, Millis received_at,
                             const Limits& limits, bool build, bool measure) {
  if (el.type() != element_type::OBJECT)
    return Err(Status::Invalid("a message must be a JSON object, not " +
                               std::string(TypeName(el.type()))));
  if (measure && MinifiedSize(el) > limits.max_message_bytes)
    return Err(Status(Code::kTooLarge, "a message may not exceed " +
                                           std::to_string(limits.max_message_bytes) + " bytes"));
  const Fields obj{object(el)};
  Message m;
  m.received_at = received_at;

  if (implied) {
    m.type = *implied;
  } else {
    auto t = Field(obj, "type");
    if (!t) return Err(Status::Invalid("is required in a batch message", "type"));
    std::string_view name;
    if (t->get_string().get(name) != simdjson::SUCCESS)
      return Err(WrongType("type", "a string", t->type()));
    auto type = ParseMessageType(name);
    if (!type)
      return Err(
          Status::Invalid("must be one of identify, track, page, screen, group, alias", "type"));
    m.type = *type;
  }

  NUDGE_ASSIGN_OR_RETURN(m.user_id, IdField(obj, "userId", limits));
  NUDGE_ASSIGN_OR_RETURN(m.anonymous_id, IdField(obj, "anonymousId", limits));
  NUDGE_ASSIGN_OR_RETURN(auto message_id, IdField(obj, "messageId", limits));
  if (message_id) {
    m.message_id = std::move(*message_id);
  } else if (build) {
    m.message_id = core::NewUuid();
  }
  if (m.message_id.starts_with("nudge:"))
    return Err(
        Status::Invalid("messageIds starting with \"nudge:\" are reserved for events nudge "
                        "derives itself",
                        "messageId"));

  if (m.type == MessageType::kAlias) {
    NUDGE_ASSIGN_OR_RETURN(auto previous, IdField(obj, "previousId", limits));
    if (!previous) return Err(Status::Invalid("is required for alias", "previousId"));
    if (!m.user_id) return Err(Status::Invalid("is required for alias", "userId"));
    m.previous_id = std::move(*previous);
  } else if (!m.user_id && !m.anonymous_id) {
    return Err(Status::Invalid("a message needs a userId or an anonymousId", "userId"));
  }

  for (const char* key : {"properties", "traits", "context", "integrations"})
    NUDGE_TRY(RequireObject(obj, key));

  std::optional<std::string> page_name;
  switch (m.type) {
    case MessageType::kTrack: {
      auto ev = Field(obj, "event");
      if (!ev) return Err(Status::Invalid("is required for track", "event"));
      std::string_view name;
      if (ev->get_string().get(name) != simdjson::SUCCESS)
        return Err(WrongType("event", "a string", ev->type()));
      if (name.empty()) return Err(Status::Invalid("must not be empty", "event"));
      if (name.size() > limits.max_id_bytes)
        return Err(Status::Invalid(
            "is longer than " + std::to_string(limits.max_id_bytes) + " bytes", "event"));
      m.event.assign(name);
      break;
    }
    case MessageType::kPage:
    case MessageType::kScreen: {
      m.event = m.type == MessageType::kPage ? kPageViewed : kScreenViewed;
      if (auto n = Field(obj, "name")) {
        std::string_view name;
        if (n->get_string().get(name) != simdjson::SUCCESS)
          return Err(WrongType("name", "a string", n->type()));
        page_name.emplace(name);
      }
      break;
    }
    case MessageType::kGroup: {
      NUDGE_ASSIGN_OR_RETURN(auto group, IdField(obj, "groupId", limits));
      if (!group) return Err(Status::Invalid("is required for group", "groupId"));
      m.group_id = std::move(*group);
      break;
    }
    case MessageType::kIdentify:
    case MessageType::kAlias:
      break;
  }
  NUDGE_ASSIGN_OR_RETURN(auto timestamp, TimeField(obj, "timestamp"));
  NUDGE_ASSIGN_OR_RETURN(auto original, TimeField(obj, "originalTimestamp"));
  NUDGE_ASSIGN_OR_RETURN(auto sent_at, TimeField(obj, "sentAt"));
  if (!sent_at) sent_at = defaults.sent_at;
  const std::optional<Millis> client_time = original ? original : timestamp;
  if (client_time && sent_at) {
    m.timestamp = received_at - (*sent_at - *client_time);
  } else if (client_time) {
    m.timestamp = *client_time;
  } else {
    m.timestamp = received_at;
  }
  if (!build) return m;

  if (m.type == MessageType::kIdentify || m.type == MessageType::kGroup) {
    if (auto t = Field(obj, "traits")) m.traits = simdjson::minify(*t);
  }
  std::optional<element> context = Field(obj, "context");
  if (!context) context = defaults.context;

  // The stored body: the client's fields as sent, ids and times normalized, no write key.
  std::string& out = m.body;
  out.reserve(512);
  out = "{";
  AppendStr(out, "type", MessageTypeName(m.type));
  AppendStr(out, "messageId", m.message_id);
  if (m.user_id) AppendStr(out, "userId", *m.user_id);
  if (m.anonymous_id) AppendStr(out, "anonymousId", *m.anonymous_id);
  if (m.type == MessageType::kAlias) AppendStr(out, "previousId", m.previous_id);
  if (m.type == MessageType::kGroup) AppendStr(out, "groupId", m.group_id);
  if (m.type == MessageType::kPage || m.type == MessageType::kScreen) {
    AppendKey(out, "properties");
    out += PageProperties(obj, context, page_name);
  }
  for (auto [key, value] : obj.obj()) {
    if (IsOneOf(key, {"type", "messageId", "userId", "anonymousId", "previousId", "groupId",
                      "timestamp", "originalTimestamp", "sentAt", "receivedAt", "writeKey",
                      "context", "integrations"}))
      continue;
    if (key == "properties" && (m.type == MessageType::kPage || m.type == MessageType::kScreen))
      continue;
    if (value.type() == element_type::NULL_VALUE) continue;
    AppendRaw(out, key, value);
  }
  if (context) AppendRaw(out, "context", *context);
  if (auto integrations = Field(obj, "integrations")) {
    AppendRaw(out, "integrations", *integrations);
  } else if (defaults.integrations) {
    AppendRaw(out, "integrations", *defaults.integrations);
  }
  AppendStr(out, "timestamp", core::FormatIso8601(m.timestamp));
  if (client_time) AppendStr(out, "originalTimestamp", core::FormatIso8601(*client_time));
  if (sent_at) AppendStr(out, "sentAt", core::FormatIso8601(*sent_at));
  AppendStr(out, "receivedAt", core::FormatIso8601(received_at));
  out += '}';
  return m;
}

Result<std::optional<std::string>> WriteKeyField(object obj) {
  auto value = Field(obj, "writeKey");
  if (!value) return std::optional<std::string>();
  std::string_view s;
  if (value->get_string().get(s) != simdjson::SUCCESS)
    return Err(WrongType("writeKey", "a string", value->type()));
  return std::optional<std::string>(std::string(s));
}

MessageType TypeOf(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kIdentify:
      return MessageType::kIdentify;
    case Endpoint::kPage:
      return MessageType::kPage;
    case Endpoint::kScreen:
      return MessageType::kScreen;
    case Endpoint::kGroup:
      return MessageType::kGroup;
    case Endpoint::kAlias:
      return MessageType::kAlias;
    case Endpoint::kTrack:
    case Endpoint::kBatch:
      break;
  }
  return MessageType::kTrack;
}

}  // namespace

std::string_view MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kIdentify:
      return "identify";
    case MessageType::kTrack:
      return "track";
    case MessageType::kPage:
      return "page";
    case MessageType::kScreen:
      return "screen";
    case MessageType::kGroup:
      return "group";
    case MessageType::kAlias:
      return "alias";
  }
  return "track";
}

std::optional<MessageType> ParseMessageType(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, MessageType>, 6> kTypes{{
      {"identify", MessageType::kIdentify},
      {"track", MessageType::kTrack},
      {"page", MessageType::kPage},
      {"screen", MessageType::kScreen},
      {"group", MessageType::kGroup},
      {"alias", MessageType::kAlias},
  }};
  for (auto [n, t] : kTypes)
    if (n == name) return t;
  return std::nullopt;
}

namespace {

constexpr std::array<std::pair<std::string_view, Endpoint>, 8> kPaths{{
    {"/v1/identify", Endpoint::kIdentify},
    {"/v1/track", Endpoint::kTrack},
    {"/v1/page", Endpoint::kPage},
    {"/v1/screen", Endpoint::kScreen},
    {"/v1/group", Endpoint::kGroup},
    {"/v1/alias", Endpoint::kAlias},
    {"/v1/batch", Endpoint::kBatch},
    {"/v1/import", Endpoint::kBatch},  // Segment's older name for batch
}};

}  // namespace

std::string_view EndpointPath(Endpoint endpoint) {
  for (auto [p, e] : kPaths)
    if (e == endpoint) return p;
  return "/v1/batch";
}

std::optional<Endpoint> EndpointFromPath(std::string_view path) {
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  for (auto [p, e] : kPaths)
    if (p == path) return e;
  return std::nullopt;
}

size_t MaxBodyBytes(Endpoint endpoint, const Limits& limits) {
  return endpoint == Endpoint::kBatch ? limits.max_batch_bytes : limits.max_message_bytes;
}

namespace {

// ParseRequest and CheckRequest: the same checks, with the messages built into `out` or only
// counted. Returns how many messages the body holds.
Result<size_t> ParseBody(Endpoint endpoint, std::string_view body, Millis received_at,
                         const Limits& limits, bool build, ParsedRequest& out) {
  thread_local simdjson::dom::parser parser;
  element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS)
    return Err(DescribeJsonError(body));
  if (root.type() != element_type::OBJECT)
    return Err(Status::Invalid(
        "the body must be a JSON object, not " + std::string(TypeName(root.type())), "body"));
  const object top(root);
  NUDGE_ASSIGN_OR_RETURN(out.write_key, WriteKeyField(top));
  const bool measure = body.size() > limits.max_message_bytes;

  if (endpoint != Endpoint::kBatch) {
    NUDGE_ASSIGN_OR_RETURN(
        auto m, ParseMessage(root, TypeOf(endpoint), {}, received_at, limits, build, measure));
    if (build) out.messages.push_back(std::move(m));
    return size_t{1};
  }

  BatchDefaults defaults;
  NUDGE_ASSIGN_OR_RETURN(defaults.sent_at, TimeField(top, "sentAt"));
  NUDGE_TRY(RequireObject(top, "context"));
  NUDGE_TRY(RequireObject(top, "integrations"));
  defaults.context = Field(top, "context");
  defaults.integrations = Field(top, "integrations");
  auto batch = Field(top, "batch");
  if (!batch) return Err(Status::Invalid("is required", "batch"));
  if (batch->type() != element_type::ARRAY)
    return Err(WrongType("batch", "an array", batch->type()));
  size_t count = 0;
  for (element item : simdjson::dom::array(*batch)) {
    auto m = ParseMessage(item, std::nullopt, defaults, received_at, limits, build, measure);
    if (!m) return Err(m.error().WithPrefix("batch[" + std::to_string(count) + "]"));
    if (build) out.messages.push_back(std::move(*m));
    ++count;
  }
  return count;
}

}  // namespace

Result<ParsedRequest> ParseRequest(Endpoint endpoint, std::string_view body, Millis received_at,
                                   const Limits& limits) {
  ParsedRequest out;
  NUDGE_TRY(ParseBody(endpoint, body, received_at, limits, /*build=*/true, out));
  return out;
}

Result<CheckedRequest> CheckRequest(Endpoint endpoint, std::string_view body,
                                    const Limits& limits) {
  ParsedRequest parsed;
  CheckedRequest out;
  NUDGE_ASSIGN_OR_RETURN(out.messages,
                         ParseBody(endpoint, body, 0, limits, /*build=*/false, parsed));
  out.write_key = std::move(parsed.write_key);
  return out;
}

}  // namespace nudge::ingest
