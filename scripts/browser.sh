#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser tests, from Debian's packages only (no browser or
# driver download: selenium is pointed at /usr/bin/chromedriver by the tests).
#
#   bash scripts/browser.sh install   # install chromium + chromium-driver if missing (needs root)
#   bash scripts/browser.sh status    # what is installed
#
# Idempotent: with both binaries present it only says so.
set -euo pipefail

say() { printf '[browser.sh] %s\n' "$*"; }
die() { printf '[browser.sh] error: %s\n' "$*" >&2; exit 1; }

installed() { command -v chromium >/dev/null && [[ -x /usr/bin/chromedriver ]]; }

install_packages() {
    if installed; then
        say "chromium and chromedriver already installed ($(chromium --version 2>/dev/null || echo '?'))"
        return
    fi
    [[ $EUID -eq 0 ]] || die "installing needs root: run 'sudo bash scripts/browser.sh install'"
    say "installing chromium and chromium-driver from Debian (about 30 s)"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have empty package lists: only refresh them when the first try fails.
    if ! apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; then
        say "apt-get install failed; refreshing package lists and retrying"
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null
    fi
    installed || die "chromium or /usr/bin/chromedriver still missing after apt-get install"
    say "installed $(chromium --version 2>/dev/null)"
}

case "${1:-}" in
    install) install_packages ;;
    status)
        if installed; then say "$(chromium --version 2>/dev/null); $(/usr/bin/chromedriver --version 2>/dev/null)"
        else say "chromium or chromedriver not installed: run 'bash scripts/browser.sh install'"; exit 1
        fi ;;
    *) die "usage: $0 install|status" ;;
esac
