#!/usr/bin/env bash
# Regenerates hero.png (1200x600): an evening sky over a row of houses, drawn with the `vips`
# command-line tool (Debian libvips-tools). The text and QR code are drawn per recipient by
# welcome-hero.yaml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Sky: navy at the top fading to a warm violet near the horizon.
vips xyz "$tmp/xy.v" 1200 600
vips extract_band "$tmp/xy.v" "$tmp/y.v" 1
vips linear "$tmp/y.v" "$tmp/sky.v" "0.12 0.05 0.08" "29 53 87" --uchar

# Houses: dark blocks of different heights with lit windows.
x=0
i=0
heights=(150 210 120 260 180 140 230 170 200 130 250 160)
widths=(110 90 130 80 120 100 95 115 85 125 90 60)
while [ $i -lt ${#heights[@]} ]; do
  h=${heights[$i]}
  w=${widths[$i]}
  vips draw_rect "$tmp/sky.v" "20 24 38" $x $((600 - h)) $w $h --fill
  wy=$((600 - h + 20))
  while [ $((wy + 18)) -lt 590 ]; do
    wx=$((x + 14))
    while [ $((wx + 14)) -lt $((x + w - 8)) ]; do
      if [ $(((wx * 7 + wy * 3 + i) % 5)) -lt 2 ]; then
        vips draw_rect "$tmp/sky.v" "255 209 102" $wx $wy 12 16 --fill
      fi
      wx=$((wx + 28))
    done
    wy=$((wy + 36))
  done
  x=$((x + w))
  i=$((i + 1))
done
vips copy "$tmp/sky.v" hero.png[compression=9,strip]
