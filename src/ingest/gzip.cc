#include "ingest/gzip.h"

#include <zlib.h>

namespace nudge::ingest {

bool LooksGzipped(std::string_view data) {
  return data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1f &&
         static_cast<unsigned char>(data[1]) == 0x8b;
}

Result<std::string> Gunzip(std::string_view data, size_t max_output) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
    return Err(Status::Internal("inflateInit2 failed"));
  std::string out;
  out.reserve(std::min<size_t>(max_output, data.size() * 4 + 64));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  char buf[16384];
  Status error;
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const size_t produced = sizeof buf - zs.avail_out;
    if (out.size() + produced > max_output) {
      error =
          Status(Code::kTooLarge,
                 "the decompressed body exceeds " + std::to_string(max_output) + " bytes", "body");
      break;
    }
    out.append(buf, produced);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      // Another gzip member follows.
      if (inflateReset(&zs) != Z_OK) {
        error = Status::Invalid("corrupt gzip body", "body");
        break;
      }
      continue;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      error = Status::Invalid("truncated gzip body", "body");
      break;
    }
    if (rc != Z_OK) {
      error = Status::Invalid(
          std::string("corrupt gzip body: ") + (zs.msg ? zs.msg : "inflate failed"), "body");
      break;
    }
  }
  inflateEnd(&zs);
  if (!error.ok()) return Err(error);
  return out;
}

}  // namespace nudge::ingest
