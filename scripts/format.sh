#!/usr/bin/env bash
# clang-format (Google style, 100 columns; .clang-format) over the C++ sources.
# Usage: scripts/format.sh check|fix
set -euo pipefail
cd "$(dirname "$0")/.."
tool=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$tool" ]; then echo "format: clang-format is not installed (make deps-test)"; exit 1; fi
mapfile -t files < <(git ls-files -co --exclude-standard -- 'src/*.cc' 'src/*.h' 'fuzz/*.cc' 'bench/*.cc' 'tests/*.cc')
case "${1:-check}" in
  fix) "$tool" -i "${files[@]}" ;;
  check)
    if ! "$tool" --dry-run --Werror "${files[@]}" 2>/tmp/nudge-format.log; then
      grep -E "^[^ ].*: (error|warning)" /tmp/nudge-format.log | head -20
      echo "format: run 'make format' to fix the files above"
      exit 1
    fi
    echo "format: ok (${#files[@]} files)" ;;
esac
