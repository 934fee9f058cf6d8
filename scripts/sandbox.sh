#!/usr/bin/env bash
# What the job sandbox and container jobs need on a provider's machine (and in CI):
#
#   bash scripts/sandbox.sh install   # the job user `msjob`; podman, runc, busybox-static;
#                                     # gcc, libc6-dev, musl-tools (the local backend's C job
#                                     # supervisor, linked statically against musl)
#   bash scripts/sandbox.sh check     # says what is missing
#
# Needs root. Idempotent. The agent runs jobs as `msjob` (its `sandbox.user` setting): a system
# user with no home, no shell and no password, in a group of its own.
set -euo pipefail

JOB_USER="${MS_SANDBOX_USER:-msjob}"
PACKAGES=(podman runc busybox-static gcc libc6-dev musl-tools)

say() { printf '[sandbox.sh] %s\n' "$*"; }
die() { printf '[sandbox.sh] error: %s\n' "$*" >&2; exit 1; }

install() {
    [[ $EUID -eq 0 ]] || die "needs root: run 'sudo bash scripts/sandbox.sh install'"
    if id -u "$JOB_USER" >/dev/null 2>&1; then
        say "job user $JOB_USER exists (uid $(id -u "$JOB_USER"))"
    else
        useradd --system --no-create-home --shell /usr/sbin/nologin --user-group "$JOB_USER"
        say "created job user $JOB_USER (uid $(id -u "$JOB_USER"))"
    fi
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]} from Debian"
        export DEBIAN_FRONTEND=noninteractive
        # A fresh machine may have empty package lists: only refresh them when the first try fails.
        if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
            apt-get update -q >/dev/null
            apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        fi
    fi
    say "podman $(podman --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1 {print $3}'), busybox $(busybox | awk 'NR==1 {print $2}'), $(gcc --version | head -1)"
}

check() {
    local bad=0
    id -u "$JOB_USER" >/dev/null 2>&1 || { say "missing: job user $JOB_USER"; bad=1; }
    for c in memory pids cpu; do
        [[ -d /sys/fs/cgroup/$c ]] || grep -qw "$c" /sys/fs/cgroup/cgroup.controllers 2>/dev/null \
            || { say "missing: cgroup controller $c"; bad=1; }
    done
    for b in podman runc busybox; do
        command -v "$b" >/dev/null || { say "missing: $b (container jobs)"; bad=1; }
    done
    command -v cc >/dev/null || { say "missing: cc (gcc, libc6-dev: the C job supervisor)"; bad=1; }
    command -v musl-gcc >/dev/null || say "optional: musl-gcc (musl-tools: a C job supervisor quicker to start)"
    ((bad)) || say "ready: job user $JOB_USER, cgroups, podman, runc, busybox, cc"
    return "$bad"
}

case "${1:-}" in
    install) install ;;
    check) check ;;
    *) echo "usage: bash scripts/sandbox.sh {install|check}" >&2; exit 2 ;;
esac
