// Small cryptographic and encoding helpers over OpenSSL. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nudge::core {

// Lowercase hex SHA-256 of data. Keys are stored as this, never in clear.
std::string Sha256Hex(std::string_view data);

// Raw (32-byte) HMAC-SHA256 of data under key.
std::string HmacSha256(std::string_view key, std::string_view data);

std::string HexEncode(std::string_view bytes);
std::string Base64Encode(std::string_view bytes);
// Standard alphabet with or without padding; nullopt on any other character.
std::optional<std::string> Base64Decode(std::string_view text);
// URL-safe alphabet, no padding (RFC 4648 §5): for tokens inside links. Decoding reads only
// what encoding writes: padding or non-zero unused bits in the last character are refused.
std::string Base64UrlEncode(std::string_view bytes);
std::optional<std::string> Base64UrlDecode(std::string_view text);

// Compares in time independent of where the inputs first differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// `length` characters of [0-9A-Za-z] from a cryptographic random source.
std::string RandomToken(size_t length);

// A random (version 4) UUID in canonical lowercase form.
std::string NewUuid();

}  // namespace nudge::core
