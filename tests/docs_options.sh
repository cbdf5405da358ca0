#!/usr/bin/env bash
# The README's option table is the one `patterntrack options-markdown` prints from the option
# table in src/config.c: a changed option without a changed README fails here.
set -euo pipefail
bin=$1
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
want=$("$bin" options-markdown)
have=$(awk '/^\| option \| type \|/ {on=1} on && /^$/ {exit} on {print}' "$root/README.md")
if [ "$want" != "$have" ]; then
    echo "README.md's option table differs from 'patterntrack options-markdown':" >&2
    diff <(printf '%s\n' "$have") <(printf '%s\n' "$want") >&2 || true
    exit 1
fi
echo "docs_options: README option table matches ($(printf '%s\n' "$want" | wc -l) lines)"
