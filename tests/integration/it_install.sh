#!/usr/bin/env bash
# An installed engine runs without its source tree (issue 19): `cmake --install` of the plain
# build under DESTDIR with prefix /usr, and the Debian package `make deb` builds (cpack, DEB),
# checked with lintian and dpkg-deb and extracted. Each is run from / with PATTERNTRACK_ROOT
# unset and its own etc/patterntrack/patterntrack.lua (adapted to this test's topics, group,
# database and port): check, migrate and run find lua/, rules/, sql/ and web/ in the installed
# share/patterntrack (a marker route and a marker in the dashboard's index.html, present only
# there, prove it); events from pt-loadgen are counted exactly, the API and /dashboard/ answer,
# SIGTERM exits 0. A second install keeps the changed site files. Bad input: a config file that
# does not exist, one that cannot be read (when run as root: the engine then runs as nobody) and
# a config whose root is an empty directory exit 1 naming the path.
#
# PT_PLAIN_BIN names the plain build (make test's sanitized tree passes it): its directory is the
# build tree installed and packaged. Nothing is written to the source tree; the build tree's
# install_manifest.txt is put back as it was.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
: "${DATABASE_URL:?is not set: eval \"\$(scripts/services env)\" first}"
need_plain_bin
build=$(cd -- "$(dirname -- "$PT_BIN")" && pwd -P)
for tool in cmake cpack lintian dpkg-deb curl; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done
[ -f "$build/cmake_install.cmake" ] && [ -f "$build/CPackConfig.cmake" ] ||
    { echo "FAIL: $build is not a configured build tree (no cmake_install.cmake)" >&2; exit 1; }

IT_DIR=$(mktemp -d /tmp/pt-it-install.XXXXXX)
ENGINE_PID=
manifest=$build/install_manifest.txt
if [ -e "$manifest" ]; then cp -p "$manifest" "$IT_DIR/manifest.orig"; fi
cleanup() {
    if [ -n "$ENGINE_PID" ] && kill -0 "$ENGINE_PID" 2>/dev/null; then
        kill -9 "$ENGINE_PID" 2>/dev/null || true
    fi
    if [ -e "$IT_DIR/manifest.orig" ]; then
        cp -p "$IT_DIR/manifest.orig" "$manifest"
    else
        rm -f "$manifest"
    fi
    if [ -n "${IT_KEEP:-}" ]; then echo "kept $IT_DIR" >&2; else rm -rf "$IT_DIR"; fi
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    if [ -s "$IT_DIR/engine.log" ]; then
        echo "--- engine log (tail) ---" >&2
        tail -n 30 "$IT_DIR/engine.log" >&2
    fi
    exit 1
}
admin_url=$DATABASE_URL
base_url=${DATABASE_URL%/*}
db_url=

# fresh_db NAME: an empty database pt_it_install_NAME, as DATABASE_URL (not migrated: the
# installed engine does it).
fresh_db() {
    PGCLIENTENCODING=UTF8 PGOPTIONS='-c client_min_messages=warning' \
        psql "$admin_url" -X -q -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS pt_it_install_$1 WITH (FORCE)" \
        -c "CREATE DATABASE pt_it_install_$1" >/dev/null
    db_url="$base_url/pt_it_install_$1"
    export DATABASE_URL=$db_url
}

# installed BIN ARGS...: the installed binary as an operator runs it: from /, without
# PATTERNTRACK_ROOT and without a path into the source or build tree in its arguments.
installed() {
    (cd / && exec env -u PATTERNTRACK_ROOT -u KAFKA_GROUP_ID -u HTTP_PORT "$@")
}

# adapt ETC_CONFIG OUT PREFIX GROUP PORT: the installed example config with this test's topics
# (PREFIX + the seed topics, rules still relative to the installed root), group, database and
# port; everything else as installed.
adapt() {
    local src=$1 out=$2 prefix=$3 group=$4 port=$5
    grep -q '\["agent-actions"\] = "rules/agent-actions.lua"' "$src" ||
        fail "$src does not map the seed topics as the example config does"
    grep -qx '}' "$src" || fail "$src has no line closing its table"
    # The options go before the last line that closes the returned table.
    awk -v p="$prefix" -v g="$group" -v d="$db_url" -v port="$port" '
        { line[NR] = $0; if ($0 == "}") last = NR }
        END {
            for (i = 1; i <= NR; i++) {
                if (i == last) {
                    printf "    kafka_group_id = \"%s\",\n    database_url = \"%s\",\n", g, d
                    printf "    http_port = %d,\n    batch_timeout_ms = 200,\n", port
                }
                l = line[i]
                gsub(/\["agent-/, "[\"" p "agent-", l)
                print l
            }
        }' "$src" >"$out"
}

# Markers only the installed copy holds: a route and a line of the dashboard's index.html.
mark() {
    local share=$1
    cat >"$share/lua/routes/zz_it_install.lua" <<'LUA'
return { { method = "GET", path = "/test/installed", summary = "it_install marker",
           handler = function() return { installed = true } end } }
LUA
    echo '<!-- it_install: served from the installed web/ -->' >>"$share/web/index.html"
}

summary_total_is() {
    curl -sf "$url/api/patterns/usage/summary" |
        python3 -c 'import json, sys
sys.exit(0 if json.load(sys.stdin)["total_usage"] == int(sys.argv[1]) else 1)' "$1"
}
up() { curl -sf "$url/health" >/dev/null; }

# exercise NAME BIN ETC_CONFIG: check, migrate, run, ingest, answer, stop, with the installed
# binary BIN and its installed example config ETC_CONFIG.
exercise() {
    local name=$1 bin=$2 etc=$3 share
    share=$(cd -- "$(dirname -- "$bin")/../share/patterntrack" && pwd -P)
    fresh_db "$name"
    local prefix="it-install-$name-$$-$RANDOM-" group port cfg=$IT_DIR/$name.lua t
    group="g-$prefix"
    port=$(free_port)
    url="http://127.0.0.1:$port"
    adapt "$etc" "$cfg" "$prefix" "$group" "$port"
    mark "$share"
    for t in agent-manifest-injections agent-actions agent-routing-decisions; do
        "$PT_IT_ROOT/scripts/services" topic "$prefix$t" >/dev/null
    done

    installed "$bin" check --config "$cfg" >"$IT_DIR/check.out" 2>&1 ||
        fail "$name: check: $(cat "$IT_DIR/check.out")"
    grep -q "rule rules/agent-actions.lua for topic ${prefix}agent-actions: ok" "$IT_DIR/check.out" ||
        fail "$name: check did not load the rules: $(cat "$IT_DIR/check.out")"
    installed "$bin" migrate --config "$cfg" >"$IT_DIR/migrate.out" 2>&1 ||
        fail "$name: migrate: $(cat "$IT_DIR/migrate.out")"
    [ "$(pt_psql -At -c 'SELECT count(*) > 0 FROM schema_migrations')" = t ] ||
        fail "$name: migrate applied nothing"

    : >"$IT_DIR/engine.log"
    # As installed() does, in one process: ENGINE_PID is the engine's own.
    (cd / && exec env -u PATTERNTRACK_ROOT -u KAFKA_GROUP_ID -u HTTP_PORT "$bin" run --config "$cfg") \
        >>"$IT_DIR/engine.log" 2>&1 &
    ENGINE_PID=$!
    wait_for 30 up || fail "$name: HTTP did not come up"
    "$PT_LOADGEN" --topic-prefix "$prefix" --events 20000 --patterns 2000 --agents 100 \
        --seed 19 --truth "$IT_DIR/$name.truth" --quiet >/dev/null ||
        fail "$name: pt-loadgen failed"
    local total
    total=$(truth_total "$IT_DIR/$name.truth")
    wait_total "$total" 60 || fail "$name: totals did not reach $total (now $(db_total))"
    check_truth "$IT_DIR/$name.truth" "$prefix" || fail "$name: the counts differ from the truth"
    wait_for 20 summary_total_is "$total" ||
        fail "$name: /api/patterns/usage/summary does not say total_usage $total"
    curl -sf "$url/test/installed" | grep -q '"installed":true' ||
        fail "$name: the marker route of the installed lua/routes is not served"
    curl -sf "$url/dashboard/" >"$IT_DIR/index.html" || fail "$name: /dashboard/ did not answer"
    grep -q '<html' "$IT_DIR/index.html" &&
        grep -q 'served from the installed web/' "$IT_DIR/index.html" ||
        fail "$name: /dashboard/ is not the installed web/index.html"
    kill -TERM "$ENGINE_PID"
    local rc=0
    wait "$ENGINE_PID" || rc=$?
    ENGINE_PID=
    [ "$rc" = 0 ] || fail "$name: SIGTERM exit status $rc"
    echo "$name: check, migrate, run from /: $total uses exact, API, dashboard, SIGTERM 0"
}

# 1. cmake --install under DESTDIR, prefix /usr; then again over it with changed site files.
dest=$IT_DIR/dest
DESTDIR=$dest cmake --install "$build" --prefix /usr >"$IT_DIR/install.out" 2>&1 ||
    fail "cmake --install: $(tail -n 20 "$IT_DIR/install.out")"
for f in usr/bin/patterntrack usr/share/patterntrack/lua/pt/sandbox.lua \
    usr/share/patterntrack/lua/routes/usage.lua usr/share/patterntrack/lua/lib/pt/usage.lua \
    usr/share/patterntrack/rules/agent-actions.lua usr/share/patterntrack/sql/001_core.sql \
    usr/share/patterntrack/sql/functions/pt_flush.sql usr/share/patterntrack/web/index.html \
    usr/share/patterntrack/web/vendor/chart-4.6.1.umd.min.js etc/patterntrack/patterntrack.lua \
    etc/default/patterntrack lib/systemd/system/patterntrack.service \
    usr/share/doc/patterntrack/copyright usr/share/doc/patterntrack/changelog.Debian.gz; do
    [ -e "$dest/$f" ] || fail "cmake --install did not install /$f"
done
echo '-- it_install: changed by the site' >>"$dest/etc/patterntrack/patterntrack.lua"
echo '# it_install: changed by the site' >>"$dest/etc/default/patterntrack"
DESTDIR=$dest cmake --install "$build" --prefix /usr >"$IT_DIR/install2.out" 2>&1 ||
    fail "second cmake --install: $(tail -n 20 "$IT_DIR/install2.out")"
grep -q 'it_install: changed by the site' "$dest/etc/patterntrack/patterntrack.lua" ||
    fail "a second install overwrote /etc/patterntrack/patterntrack.lua"
grep -q 'it_install: changed by the site' "$dest/etc/default/patterntrack" ||
    fail "a second install overwrote /etc/default/patterntrack"
grep -q "Keeping: $dest/etc/patterntrack/patterntrack.lua" "$IT_DIR/install2.out" ||
    fail "the second install does not say it kept the config: $(cat "$IT_DIR/install2.out")"
echo "install: DESTDIR + prefix /usr; a second install kept both changed site files"
exercise destdir "$dest/usr/bin/patterntrack" "$dest/etc/patterntrack/patterntrack.lua"

# 2. Bad input, on the installed binary: status 1 (bad usage or config) and the path named.
expect_bad() { # WHAT PATH COMMAND...
    local what=$1 path=$2 rc=0
    shift 2
    installed "$@" >"$IT_DIR/bad.out" 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "$what: exit status $rc, not 1: $(cat "$IT_DIR/bad.out")"
    grep -qF "$path" "$IT_DIR/bad.out" ||
        fail "$what: the message does not name $path: $(cat "$IT_DIR/bad.out")"
}
missing=$IT_DIR/no-such-dir/patterntrack.lua
expect_bad "check with a missing config" "$missing" \
    "$dest/usr/bin/patterntrack" check --config "$missing"
expect_bad "run with a missing config" "$missing" \
    "$dest/usr/bin/patterntrack" run --config "$missing"
mkdir "$IT_DIR/empty-root"
printf 'return { root = "%s" }\n' "$IT_DIR/empty-root" >"$IT_DIR/empty-root.lua"
empty_cfg=$IT_DIR/empty-root.lua
expect_bad "check with root an empty directory" "$IT_DIR/empty-root" \
    "$dest/usr/bin/patterntrack" check --config "$empty_cfg"
expect_bad "run with root an empty directory" "$IT_DIR/empty-root" \
    "$dest/usr/bin/patterntrack" run --config "$empty_cfg"
bad="a missing config file and a root without the engine's files"
if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
    # Unreadable: root reads any file, so the engine runs as nobody (the install is 0755).
    chmod 0755 "$IT_DIR"
    echo 'return {}' >"$IT_DIR/unreadable.lua"
    chmod 0600 "$IT_DIR/unreadable.lua"
    expect_bad "check with an unreadable config" "$IT_DIR/unreadable.lua" \
        runuser -u nobody -- "$dest/usr/bin/patterntrack" check --config "$IT_DIR/unreadable.lua"
    bad="$bad, an unreadable config file"
fi
echo "bad input: $bad exit 1 naming the path"

# 3. The Debian package, as make deb builds it (cpack's staging goes to the temp dir too).
ls -A "$build" >"$IT_DIR/build.before"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$IT_DIR/pkg" >"$IT_DIR/cpack.out" 2>&1 ||
    fail "cpack: $(tail -n 20 "$IT_DIR/cpack.out")"
ls -A "$build" | diff "$IT_DIR/build.before" - >&2 || fail "cpack wrote into the build tree $build"
debs=("$IT_DIR"/pkg/patterntrack_*_*.deb)
[ "${#debs[@]}" = 1 ] && [ -f "${debs[0]}" ] || fail "cpack made no patterntrack_<version>_<arch>.deb"
deb=${debs[0]}
# lintian: no error. The warnings it gives, tolerated:
#   initial-upload-closes-no-bugs   the package is not uploaded to Debian (no ITP bug to close)
#   no-manual-page                  `patterntrack --help` and the README are the reference
#   non-standard-file-perm 0640 [etc/default/patterntrack]   it holds the database password
#                                   and the HTTP token (postinst gives it to group patterntrack)
# Any other warning is printed (not failed): a note for whoever changed the package.
lrc=0
lintian "$deb" >"$IT_DIR/lintian.out" 2>&1 || lrc=$?
if [ "$lrc" -gt 1 ]; then
    fail "lintian did not run (status $lrc): $(cat "$IT_DIR/lintian.out")"
fi
if [ "$lrc" != 0 ] || grep -q '^E: ' "$IT_DIR/lintian.out"; then
    fail "lintian reports errors: $(grep -v 'running with root privileges' "$IT_DIR/lintian.out")"
fi
grep '^W: ' "$IT_DIR/lintian.out" |
    grep -v -e 'initial-upload-closes-no-bugs' -e 'no-manual-page' \
        -e 'non-standard-file-perm 0640 != 0644 \[etc/default/patterntrack\]' |
    sed 's/^/note: new lintian warning: /' >&2 || true
dpkg-deb -f "$deb" Depends >"$IT_DIR/depends"
for d in libpq5 librdkafka1 libevent liblua5.4 lua-cjson adduser; do
    grep -q "$d" "$IT_DIR/depends" || fail "the package's Depends lacks $d: $(cat "$IT_DIR/depends")"
done
dpkg-deb -I "$deb" conffiles >"$IT_DIR/conffiles" 2>&1 || fail "the package has no conffiles"
for c in /etc/patterntrack/patterntrack.lua /etc/default/patterntrack; do
    grep -qx "$c" "$IT_DIR/conffiles" || fail "$c is not a conffile: $(cat "$IT_DIR/conffiles")"
done
for s in postinst postrm; do
    dpkg-deb -I "$deb" "$s" >"$IT_DIR/$s" 2>&1 || fail "the package has no $s"
done
grep -q 'adduser --system --group' "$IT_DIR/postinst" ||
    fail "postinst does not create the system user"
grep -q 'deluser --system' "$IT_DIR/postrm" || fail "postrm does not remove the system user"
dpkg-deb -c "$deb" >"$IT_DIR/contents"
for f in ./usr/bin/patterntrack ./usr/share/patterntrack/lua/pt/sandbox.lua \
    ./usr/share/patterntrack/web/index.html ./etc/patterntrack/patterntrack.lua \
    ./etc/default/patterntrack ./lib/systemd/system/patterntrack.service \
    ./usr/share/doc/patterntrack/copyright ./usr/share/doc/patterntrack/changelog.Debian.gz; do
    grep -q " $f\$" "$IT_DIR/contents" || fail "the package lacks $f"
done
warnings=$(grep -c '^W: ' "$IT_DIR/lintian.out" || true)
echo "package: $(basename "$deb"), lintian: no errors, $warnings warnings;" \
    "Depends: $(cat "$IT_DIR/depends")"
root=$IT_DIR/extracted
dpkg-deb -x "$deb" "$root"
exercise deb "$root/usr/bin/patterntrack" "$root/etc/patterntrack/patterntrack.lua"

echo "it_install: ok (cmake --install DESTDIR + prefix /usr, and the .deb extracted: both run" \
    "from / without the source tree; site files kept on reinstall; bad input exits 1)"
