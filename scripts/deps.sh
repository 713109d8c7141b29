#!/usr/bin/env bash
# Installs the system packages Greenlight's build and tests need, idempotently:
# only what is missing, with one `apt-get update` at most. Used by `make test`,
# `make demo` and `.ci/run`.
#   scripts/deps.sh test    packages for the test suite
#   scripts/deps.sh demo    packages for the demo
#   scripts/deps.sh cargo-fuzz   only cargo-fuzz (`make fuzz` on a machine
#                           set up by hand; its C++ needs g++, in the list)
set -euo pipefail

want=(mosquitto mosquitto-clients curl ca-certificates pkg-config build-essential
      dbus-daemon gnome-keyring libsecret-tools
      # the desktop app (Tauri 2 on WebKitGTK) and its tray
      libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev
      # its end-to-end test: a virtual display, the WebDriver, screenshots;
      # the package test also finds the installed app's window (xwininfo)
      xvfb webkit2gtk-driver dbus imagemagick x11-utils
      # the launcher badge (Unity's launcher API, which GNOME's and KDE's
      # docks read): the app loads it at run time; the e2e test sees its count
      libunity9
      # `greenlight service`'s test verifies the unit it writes (systemd-analyze)
      systemd)

# tauri-driver (WebDriver for Tauri apps) comes from crates.io, not GitHub.
tauri_driver() {
  if ! command -v tauri-driver >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
    echo "deps: installing tauri-driver from crates.io" >&2
    cargo install tauri-driver --version 2.1.0 --locked --quiet
  fi
}

# cargo-fuzz (`make fuzz`, and the short run in `make test`) from crates.io,
# pinned like tauri-driver so a fresh machine gets what was measured.
cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "deps: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --version 0.13.2 --locked --quiet
  fi
}
if [ "${1:-}" = cargo-fuzz ]; then
  cargo_fuzz
  exit 0
fi

missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  tauri_driver
  cargo_fuzz
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a system mosquitto on port 1883 after install; the tests start
# their own on free ports and do not need it.
tauri_driver
cargo_fuzz
