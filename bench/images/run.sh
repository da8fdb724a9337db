#!/usr/bin/env bash
# Dynamic images: renders/s per core for examples/demo/images/welcome-hero.yaml (1200x600, two
# text layers and a QR code) in PNG, JPEG and WebP, cold (every render a new name) and cached,
# beside two references measured here:
#   - in image_bench: libvips decoding the base image file and encoding it again (the floor);
#   - here: the `vips` command-line tool (Debian libvips-tools) drawing the same two text
#     layers (vips text, vips linear to colour them, one vips composite writing the output);
#     no QR code (the tool has none), and each step is a process start.
# Prints one JSON object (with the load average at the start, after image_bench and at the end);
# progress goes to stderr.
#
# Usage: bench/images/run.sh BUILD_DIR
#   BUILD_DIR configured with -DNUDGE_BUILD_BENCH=ON; image_bench is built when missing.
#   BENCH_IMAGE_SECONDS=2   time per figure in image_bench
#   BENCH_IMAGE_CLI_N=10    images per format made with the vips tool
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:?usage: bench/images/run.sh BUILD_DIR}
[[ "$build" = /* ]] || build="$PWD/$build"
seconds=${BENCH_IMAGE_SECONDS:-2}
cli_n=${BENCH_IMAGE_CLI_N:-10}
template="$root/examples/demo/images/welcome-hero.yaml"
bench="$build/src/content/image/image_bench"

if [ ! -x "$bench" ]; then
  echo "images: building image_bench in $build" >&2
  cmake -S "$root" -B "$build" -DNUDGE_BUILD_BENCH=ON >/dev/null
  cmake --build "$build" -j2 --target image_bench >&2
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
nudge_json=$("$bench" "$template" "$seconds")
load_after_nudge=$(cut -d' ' -f1-3 /proc/loadavg)

cli_json='{"skipped":"vips command-line tool not found (Debian libvips-tools)"}'
cli_ok=true
if command -v vips >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  base="$root/examples/demo/images/hero.png"
  # One image: each text layer drawn as a mask, coloured, then all composited over the base.
  cli_render() {
    local name=$1 out=$2
    vips text "$tmp/t1.v" "Welcome home, $name!" --font "DejaVu Sans Bold 56" --dpi 72 \
      --width 1080 --align centre
    vips linear "$tmp/t1.v" "$tmp/c1.v" "0 0 0 1" "255 255 255 0" --uchar
    vips copy "$tmp/c1.v" "$tmp/s1.v" --interpretation srgb
    vips text "$tmp/t2.v" "Your evenings in Kreuzberg start here." --font "DejaVu Sans 30" \
      --dpi 72 --width 1080 --align centre
    vips linear "$tmp/t2.v" "$tmp/c2.v" "0 0 0 1" "255 209 102 0" --uchar
    vips copy "$tmp/c2.v" "$tmp/s2.v" --interpretation srgb
    vips composite "$base $tmp/s1.v $tmp/s2.v" "$out" "2 2" --x "300 320" --y "110 220"
  }
  cli_json="{"
  sep=""
  for fmt in png jpg webp; do
    case $fmt in
      png) out="$tmp/out.png[compression=6,strip]" ;;
      jpg) out="$tmp/out.jpg[Q=85,strip]" ;;
      webp) out="$tmp/out.webp[Q=85,strip]" ;;
    esac
    echo "images: vips command-line reference, $fmt" >&2
    start=$(date +%s.%N)
    ok=true
    for i in $(seq 1 "$cli_n"); do
      cli_render "Contact$i" "$out" || { ok=false; break; }
    done
    end=$(date +%s.%N)
    [ "$ok" = true ] || cli_ok=false
    rate=$(awk -v n="$cli_n" -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", n / (e - s) }')
    ms=$(awk -v n="$cli_n" -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", 1000 * (e - s) / n }')
    cli_json+="$sep\"$fmt\":{\"renders_per_s\":$rate,\"ms_per_render\":$ms,\"n\":$cli_n,\"ok\":$ok}"
    sep=","
  done
  cli_json+=",\"processes_per_render\":7,\"qr_code\":false}"
fi

ok=true
[[ "$nudge_json" == *'"ok":true}' ]] || ok=false
[ "$cli_ok" = true ] || ok=false
printf '{"images":%s,\n"reference_vips_cli":%s,\n"load_average":{"start":"%s","after_image_bench":"%s","end":"%s"},\n"ok":%s}\n' \
  "$nudge_json" "$cli_json" "$load_start" "$load_after_nudge" "$(cut -d' ' -f1-3 /proc/loadavg)" "$ok"
[ "$ok" = true ]
