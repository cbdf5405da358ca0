#!/usr/bin/env bash
# C sources follow .clang-format (STYLE.md); this fails on any file that would change.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
files=$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'tests/unit/*.h' 'tests/fuzz/*.c' 'tests/fuzz/*.h' 'bench/*.c' 2>/dev/null || ls src/*.[ch] tests/unit/*.[ch] tests/fuzz/*.[ch] bench/*.c)
clang-format --dry-run -Werror $files
echo "format: $(echo "$files" | wc -w) files formatted"
