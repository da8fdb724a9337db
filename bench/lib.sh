# Sourced by the benchmark scripts after they set `bench` (their name in the JSON they print).
# shellcheck shell=bash

# fail MESSAGE: says why on stderr, prints {"benchmark": NAME, "ok": false, "error": MESSAGE}
# as the script's output, and exits 1.
fail() {
  echo "$bench: $*" >&2
  printf '{"benchmark":"%s","ok":false,"error":"%s"}\n' "$bench" "${*//\"/\'}"
  exit 1
}
