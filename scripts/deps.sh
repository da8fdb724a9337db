#!/usr/bin/env bash
# Installs the Debian packages nudge builds, runs and tests with, when any is missing.
# Usage: scripts/deps.sh [build|test|bench]   (each set includes the ones before it)
set -euo pipefail
want=${1:-build}

build_pkgs=(g++ cmake ninja-build pkg-config make
  libsqlite3-dev libmicrohttpd-dev libsimdjson-dev nlohmann-json3-dev libyaml-cpp-dev
  libcurl4-openssl-dev libssl-dev libphonenumber-dev libexpected-dev libcli11-dev
  libspdlog-dev libgtest-dev libgmock-dev zlib1g-dev libzstd-dev libre2-dev libroaring-dev libcctz-dev tzdata
  libopendkim-dev libvips-dev libpango1.0-dev libfontconfig-dev libqrencode-dev fonts-dejavu-core)
test_pkgs=(clang-14 libclang-rt-14-dev clang-format sqlite3 python3 curl ruby ruby-liquid
  postfix python3-dkim zbar-tools)
bench_pkgs=(wrk nginx-light libbenchmark-dev libvips-tools)

pkgs=("${build_pkgs[@]}")
case "$want" in
  test) pkgs+=("${test_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Node.js may come from elsewhere than Debian (nodesource, nvm); only install it when absent.
if [ "$want" != build ] && ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # The email tests only run Postfix's smtp-sink and smtp-source: never configure or start an MTA.
  if printf '%s\n' "${missing[@]}" | grep -qx postfix; then
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  fi
  $sudo apt-get update -q || true
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
