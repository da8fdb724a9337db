#include "track/rewrite.h"

#include <cctype>

#include "track/pages.h"

namespace nudge::track {
namespace {

bool IStartsWith(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

std::string DecodeAttr(std::string_view v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '&') {
      static constexpr std::pair<std::string_view, char> kEntities[] = {
          {"&amp;", '&'}, {"&quot;", '"'},  {"&#39;", '\''}, {"&lt;", '<'},
          {"&gt;", '>'},  {"&#x27;", '\''}, {"&#38;", '&'}};
      bool done = false;
      for (const auto& [e, c] : kEntities) {
        if (v.substr(i, e.size()) == e) {
          out += c;
          i += e.size() - 1;
          done = true;
          break;
        }
      }
      if (done) continue;
    }
    out += v[i];
  }
  return out;
}

}  // namespace

std::string RewriteHtmlLinks(std::string_view html, const TrackFn& track,
                             std::set<std::string>* untracked) {
  std::string out;
  out.reserve(html.size() + html.size() / 4);
  size_t i = 0;
  while (i < html.size()) {
    const size_t lt = html.find('<', i);
    if (lt == std::string_view::npos) {
      out.append(html.substr(i));
      break;
    }
    out.append(html.substr(i, lt - i));
    // Comments pass through untouched.
    if (html.compare(lt, 4, "<!--") == 0) {
      const size_t end = html.find("-->", lt + 4);
      const size_t stop = end == std::string_view::npos ? html.size() : end + 3;
      out.append(html.substr(lt, stop - lt));
      i = stop;
      continue;
    }
    // Find the tag's end, minding quotes.
    size_t j = lt + 1;
    char quote = 0;
    while (j < html.size()) {
      if (quote) {
        if (html[j] == quote) quote = 0;
      } else if (html[j] == '"' || html[j] == '\'') {
        quote = html[j];
      } else if (html[j] == '>') {
        break;
      }
      ++j;
    }
    const size_t end = j < html.size() ? j + 1 : html.size();
    std::string_view tag = html.substr(lt, end - lt);
    const bool is_link =
        (IStartsWith(tag, "<a") || IStartsWith(tag, "<area")) && tag.size() > 2 &&
        (std::isspace(static_cast<unsigned char>(tag[IStartsWith(tag, "<area") ? 5 : 2])));
    std::string lower(tag);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!is_link) {
      out.append(tag);
      i = end;
      continue;
    }
    const bool off = lower.find("data-nudge-track=\"off\"") != std::string::npos ||
                     lower.find("data-nudge-track='off'") != std::string::npos;
    // Locate href=.
    size_t h = 0;
    bool found = false;
    while ((h = lower.find("href", h)) != std::string::npos) {
      const bool boundary = h > 0 && (std::isspace(static_cast<unsigned char>(lower[h - 1])));
      size_t k = h + 4;
      while (k < lower.size() && std::isspace(static_cast<unsigned char>(lower[k]))) ++k;
      if (boundary && k < lower.size() && lower[k] == '=') {
        ++k;
        while (k < lower.size() && std::isspace(static_cast<unsigned char>(lower[k]))) ++k;
        size_t vs = k, ve;
        char q = 0;
        if (k < lower.size() && (lower[k] == '"' || lower[k] == '\'')) {
          q = lower[k];
          vs = k + 1;
          ve = lower.find(q, vs);
          if (ve == std::string::npos) break;
        } else {
          ve = vs;
          while (ve < lower.size() && !std::isspace(static_cast<unsigned char>(lower[ve])) &&
                 lower[ve] != '>')
            ++ve;
        }
        const std::string url = DecodeAttr(tag.substr(vs, ve - vs));
        std::optional<std::string> tracked;
        if (off) {
          if (untracked) untracked->insert(url);
        } else if (IStartsWith(url, "http://") || IStartsWith(url, "https://")) {
          tracked = track(url);
        }
        if (tracked) {
          out.append(tag.substr(0, vs));
          if (!q) out += '"';
          out += HtmlEscape(*tracked);
          if (!q) out += '"';
          out.append(tag.substr(ve));
        } else {
          out.append(tag);
        }
        found = true;
        break;
      }
      h += 4;
    }
    if (!found) out.append(tag);
    i = end;
  }
  return out;
}

std::string RewriteTextLinks(std::string_view text, const TrackFn& track) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t a = text.find("http", i);
    while (a != std::string_view::npos &&
           !(IStartsWith(text.substr(a), "http://") || IStartsWith(text.substr(a), "https://")))
      a = text.find("http", a + 4);
    if (a == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, a - i));
    size_t e = a;
    while (e < text.size() && !std::isspace(static_cast<unsigned char>(text[e])) &&
           text[e] != '<' && text[e] != '>' && text[e] != '"')
      ++e;
    // Trailing punctuation belongs to the sentence; a ')' closes a "(url)".
    while (e > a &&
           (text[e - 1] == '.' || text[e - 1] == ',' || text[e - 1] == ';' || text[e - 1] == ':' ||
            text[e - 1] == '!' || text[e - 1] == '?' || text[e - 1] == ')'))
      --e;
    const std::string url(text.substr(a, e - a));
    if (auto tracked = track(url)) {
      out += *tracked;
    } else {
      out += url;
    }
    i = e;
  }
  return out;
}

void InsertOpenPixel(std::string& html, std::string_view pixel_url) {
  const std::string img = "<img src=\"" + HtmlEscape(pixel_url) +
                          "\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">";
  size_t at = html.rfind("</body>");
  if (at == std::string::npos) at = html.rfind("</BODY>");
  if (at == std::string::npos) {
    html += img;
  } else {
    html.insert(at, img);
  }
}

}  // namespace nudge::track
