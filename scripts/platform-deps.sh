#!/usr/bin/env bash
# What can be checked here about the other platforms, checked: the app's
# dependency graph for each target Greenlight ships on (`make platform-deps`,
# part of `make lint`). No SDK, NDK, Xcode or rust-std for those targets is
# needed: `cargo tree --target T` resolves the locked graph with the target's
# cfg (rustc knows every built-in target's cfg without its std). Asserts, per
# target:
#   - its keychain store is in the graph, and no other platform's store;
#   - TLS is rustls on ring with the bundled web roots (webpki-root-certs),
#     and there is one crypto library: no aws-lc-rs/aws-lc-sys, no OpenSSL;
#   - the desktop-only pieces (tray, autostart, single instance, desktop
#     notifications, D-Bus) are in the desktop graphs and not in the phone
#     ones;
#   - the simulator and its servers (greenlight-sim, rumqttd, axum) are in
#     no graph: they are the app's dev-dependencies, for tests only.
# The graph is the app's normal and build dependencies (its dev-dependencies
# do not ship). Works offline from the registry cache (--locked: Cargo.lock
# must be up to date). Prints one line per target; exits 1 if a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(
  aarch64-linux-android
  aarch64-apple-ios
  x86_64-apple-darwin
  x86_64-pc-windows-msvc
  x86_64-unknown-linux-gnu
)
stores=(
  android-native-keyring-store
  apple-native-keyring-store
  windows-native-keyring-store
  zbus-secret-service-keyring-store
)

failed=0    # checks failed, all targets
summary=()
target=""
tree=""
pkgs=""
feats=""
errors=0    # checks failed for this target

fail() {
  echo "platform-deps: FAILED [$target] $*" >&2
  errors=$((errors + 1))
}

# Why a crate is in the graph: the first lines of the inverted tree.
why() {
  local out
  out=$(cargo tree --locked -q -p greenlight-app --target "$target" -e normal,build \
    -i "$1" --prefix indent 2>/dev/null | head -n 8) || true
  [ -n "$out" ] && sed 's/^/      /' <<<"$out" >&2
  return 0
}
# Why a crate has a feature: what enables it, from the inverted feature tree.
why_feature() {
  local out
  out=$(cargo tree --locked -q -p greenlight-app --target "$target" -e normal,build,features \
    -i "$1" --prefix indent 2>/dev/null |
    awk -v f="$1 feature \"$2\"" '
      { top = index($0, "├") == 1 || index($0, "└") == 1 }
      on && top { exit }
      on { print; if (++n == 6) exit }
      top && index($0, f) { on = 1; print }') || true
  [ -n "$out" ] && sed 's/^/      /' <<<"$out" >&2
  return 0
}

has() { grep -qxF -- "$1" <<<"$pkgs"; }
has_feature() { grep -qxF -- "$1/$2" <<<"$feats"; }

need() { # crate, why it must be there
  has "$1" || fail "$1 is not in the graph: $2"
}
forbid() { # crate, why it must not be there
  if has "$1"; then
    fail "$1 is in the graph: $2; pulled in by:"
    why "$1"
  fi
}
need_feature() { # crate, feature, why
  if ! has "$1"; then
    fail "$1 is not in the graph (with feature \"$2\"): $3"
  elif ! has_feature "$1" "$2"; then
    fail "$1 lacks feature \"$2\": $3"
  fi
}
forbid_feature() { # crate, feature, why
  if has_feature "$1" "$2"; then
    fail "$1 has feature \"$2\": $3; enabled by:"
    why_feature "$1" "$2"
  fi
}

for target in "${targets[@]}"; do
  errors=0
  rustc --print cfg --target "$target" >/dev/null 2>&1 ||
    { echo "platform-deps: rustc does not know the target $target" >&2; exit 1; }
  # One line per package ("name vX.Y.Z[ (path)]|feature,feature") and one per
  # enabled feature ("name feature \"f\""), with repeats marked (*).
  tree=$(cargo tree --locked -q -p greenlight-app --target "$target" \
    -e normal,build,features --prefix none --format '{p}|{f}') ||
    { echo "platform-deps: cargo tree failed for $target (is Cargo.lock up to date?)" >&2; exit 1; }
  pkgs=$(sed -nE 's/^([A-Za-z0-9_-]+) v[0-9][^|]*\|.*/\1/p' <<<"$tree" | sort -u)
  feats=$({
    sed -nE 's/^([A-Za-z0-9_-]+) v[0-9][^|]*\|([^ ]*).*/\1 \2/p' <<<"$tree" |
      awk '{ n = split($2, f, ","); for (i = 1; i <= n; i++) print $1 "/" f[i] }'
    sed -nE 's/^([A-Za-z0-9_-]+) feature "([^"]+)".*/\1\/\2/p' <<<"$tree"
  } | sort -u)
  count=$(sed -nE 's/^([A-Za-z0-9_-]+ v[0-9][^ |]*).*/\1/p' <<<"$tree" | sort -u | wc -l)
  [ "$count" -gt 0 ] || { echo "platform-deps: empty graph for $target" >&2; exit 1; }

  # The keychain: one store, this platform's.
  case "$target" in
    *-linux-android)
      store=android-native-keyring-store
      need "$store" "the keychain store for $target (Android's keystore)" ;;
    *-apple-ios)
      store=apple-native-keyring-store
      need_feature "$store" protected "the keychain store for $target (iOS keeps secrets in the protected, data-protection keychain)"
      forbid_feature "$store" keychain "the legacy keychain is macOS's, not iOS's" ;;
    *-apple-darwin)
      store=apple-native-keyring-store
      need_feature "$store" keychain "the keychain store for $target (macOS keeps secrets in the login, legacy, keychain)"
      forbid_feature "$store" protected "the protected store is iOS's (on macOS it needs a signed app with a keychain-access-groups entitlement)" ;;
    *-windows-*)
      store=windows-native-keyring-store
      need "$store" "the keychain store for $target (the Credential Manager)" ;;
    *-linux-gnu)
      store=zbus-secret-service-keyring-store
      need "$store" "the keychain store for $target (the Secret Service over D-Bus)" ;;
  esac
  for s in "${stores[@]}"; do
    [ "$s" = "$store" ] || forbid "$s" "another platform's keychain store"
  done

  # TLS: rustls on ring, the bundled roots; one crypto library.
  need_feature rustls ring "every TLS connection uses rustls with the ring provider (crates/core/src/tls.rs)"
  need ring "the crypto provider"
  need webpki-root-certs "the bundled web roots HTTPS is verified against"
  forbid aws-lc-rs "a second crypto provider (ring is the one)"
  forbid aws-lc-sys "a second crypto library (ring is the one)"
  forbid openssl-sys "a second crypto library (OpenSSL; ring is the one)"

  # Desktop-only pieces: everywhere on the desktops, nowhere on the phones.
  desktop_only=(tauri-plugin-autostart tauri-plugin-single-instance tray-icon notify-rust)
  case "$target" in
    *-linux-android | *-apple-ios)
      for c in "${desktop_only[@]}"; do forbid "$c" "desktop-only, not for $target"; done
      forbid_feature tauri tray-icon "the tray is desktop-only, not for $target (src-tauri/Cargo.toml: enable it in the desktop-only [target.'cfg(not(any(target_os = \"android\", target_os = \"ios\")))'.dependencies])"
      forbid zbus "D-Bus is Linux-only, not for $target" ;;
    *)
      for c in "${desktop_only[@]}"; do need "$c" "the desktop app needs it on $target"; done
      need_feature tauri tray-icon "the tray (the pending count, close-to-tray) on $target"
      case "$target" in
        *-linux-gnu) need zbus "the Secret Service, notifications and single instance use D-Bus" ;;
        *) forbid zbus "D-Bus is Linux-only, not for $target" ;;
      esac ;;
  esac

  # The simulator and its servers: tests only.
  for c in greenlight-sim rumqttd axum; do
    forbid "$c" "the simulator is a dev-dependency (tests and the demo's separate process), never linked into the app"
  done

  if [ "$errors" -eq 0 ]; then
    summary+=("platform-deps: $target OK ($count packages)")
  else
    summary+=("platform-deps: $target FAILED ($errors failed; $count packages)")
    failed=$((failed + errors))
  fi
done

printf '%s\n' "${summary[@]}"
if [ "$failed" -gt 0 ]; then
  echo "platform-deps: $failed failed (see above)" >&2
  exit 1
fi
