// Message templates: what a journey's `send` step names. A template is a YAML (or JSON) document
// whose parts are Liquid:
//
//   id: welcome
//   channel: email                 # email | sms | partial
//   subject: "Welcome, {{ contact.traits.first_name | default: 'friend' }}"
//   preheader: "Three things to try first"
//   from: "Acme <hello@acme.test>" # optional: the channel's default otherwise
//   reply_to: "support@acme.test"
//   topic: news                    # optional subscription topic the message belongs to
//   transactional: false           # true: the transactional lane, sent even to the unsubscribed
//   layout: base                   # optional partial the HTML is placed into as {{ content }}
//   html: "<p>Hi {{ contact.traits.first_name }}</p>"
//   text: "..."                    # made from the HTML when absent
//   locales:                       # chosen by contact.traits.locale ("de-AT" → "de-AT", "de")
//     de: { subject: "Willkommen", html: "..." }
//
// An SMS template has `body` (its GSM-7/UCS-2 segment count is reported), a partial has `body`
// and is used with {% render 'name' %} / {% include 'name' %} or as a `layout`.
// The server stores templates self-contained: `nudge apply` and `nudge render` inline the
// `html_file`, `text_file` and `body_file` keys (and `<id>.html.liquid`, `<id>.text.liquid`,
// `<id>.liquid` beside the YAML) before anything is parsed here.
//
// Thread-safety: a MessageTemplate is immutable once parsed; Render may run on many threads.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "content/liquid.h"
#include "core/result.h"

namespace nudge::content {

// The Liquid of one locale (or of the template itself). A null part is absent.
struct TemplateParts {
  std::shared_ptr<const Template> subject, preheader, from, reply_to, html, text, body;
};

struct MessageTemplate {
  std::string id;
  std::string channel;  // email, sms, partial
  std::string name;
  std::string description;
  std::string topic;  // "" when the message belongs to no topic
  bool transactional = false;
  std::string layout;  // a partial's id, or ""
  TemplateParts parts;
  std::map<std::string, TemplateParts> locales;  // by lowercase tag
  std::vector<std::string> partials;             // every partial the parts name (and layout)
  std::string source;                            // the text it was parsed from
};

// Filters and partials templates are compiled and rendered with.
struct TemplateEnv {
  std::shared_ptr<const FilterRegistry> filters;  // null: the standard ones and nudge's
  // Whether a partial exists (checked when a template is saved); null: any name is accepted.
  std::function<bool(std::string_view)> partial_exists;
};

// Parses and compiles a template. `id`, when given (the URL's), must match the document's.
// Errors: kInvalidArgument naming the field with where = "source:line:column" (Liquid syntax
// errors, unknown filters and partials point into the document).
Result<std::shared_ptr<const MessageTemplate>> ParseTemplate(std::string_view text,
                                                             std::string_view source,
                                                             std::optional<std::string_view> id,
                                                             const TemplateEnv& env = {});

// The standard filters plus nudge's: money, local_time, image_url (see RenderEnv).
std::shared_ptr<const FilterRegistry> NudgeFilters();

// What nudge's own filters need during one render on this thread: set by RenderScope.
struct RenderEnv {
  // Makes the URL of a personalized image for the contact being rendered ({{ 'hero' |
  // image_url: 'jpg' }}); null: image_url renders "".
  std::function<std::string(std::string_view image, std::string_view format)> image_url;
};

// Makes `env` visible to nudge's filters on this thread until destroyed (renders are
// synchronous, so a scope around Render is enough).
class RenderScope {
 public:
  explicit RenderScope(const RenderEnv* env);
  ~RenderScope();
  RenderScope(const RenderScope&) = delete;
  RenderScope& operator=(const RenderScope&) = delete;

 private:
  const RenderEnv* previous_;
};

struct RenderedMessage {
  std::string locale;  // the variant used, "" for the template's own parts
  std::string subject, preheader, from, reply_to, html, text;
  std::string body;  // SMS
  int sms_segments = 0;
  std::string sms_encoding;  // "GSM-7" or "UCS-2"
  nlohmann::json ToJson() const;
};

struct TemplateRenderOptions {
  const PartialLookup* partials = nullptr;
  const core::Clock* clock = nullptr;
  // The layout partial's template (looked up by the caller), or null.
  std::shared_ptr<const Template> layout;
};

// Renders every part for `context` (contact, event, journey, message, workspace). The locale is
// chosen from contact.traits.locale. HTML parts render in HTML mode; subject, preheader, text
// and SMS bodies in text mode. Render errors (limits) fail with the part named. With a layout,
// `content` is set in the context while the layout renders (so the context is not const: one
// context per message, not shared between threads).
Result<RenderedMessage> RenderTemplate(const MessageTemplate& tmpl, Context& context,
                                       const TemplateRenderOptions& options);

// The locale variant for a contact's `locale` trait ("de-AT" → "de-at", then "de"), or "".
std::string ChooseLocale(const MessageTemplate& tmpl, std::string_view locale);

}  // namespace nudge::content
