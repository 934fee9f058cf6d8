# Helpers shared by scripts/slurm.sh and scripts/postgres.sh (sourced, not run): which process
# holds a port, whether a pid is alive, how to stop a daemon that is not this clone's.
#
# Several clones of this repo may share one machine, and a deleted clone may leave its daemons
# running. Each script reuses a daemon only when it runs from this clone's own files and answers;
# a daemon whose files are gone (its clone was deleted) is stopped; a live daemon of another clone
# is left alone and this clone takes the next free port.

# A process is alive if it exists and is not a zombie: in containers whose PID 1 does not reap,
# dead daemons linger as zombies and `kill -0` would still succeed.
alive_pid() {
    local pid="$1"
    [[ -n "$pid" && -r "/proc/$pid/status" ]] || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status"
}

alive_pidfile() {
    [[ -r "$1" ]] || return 1
    alive_pid "$(head -n1 "$1" | tr -d '[:space:]')"
}

# The command line of a process, arguments separated by spaces.
cmdline_of() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# The value following flag $2 (e.g. `-f`, `-D`) on process $1's command line, if any.
arg_of() {
    local pid="$1" flag="$2" prev="" a
    while IFS= read -r -d '' a; do
        if [[ "$prev" == "$flag" ]]; then
            printf '%s\n' "$a"
            return 0
        fi
        prev="$a"
    done <"/proc/$pid/cmdline" 2>/dev/null
    return 1
}

# Prints the pid listening on TCP port $1 and succeeds; fails when nothing listens there. Prints
# `?` when something listens but its process is not visible (another namespace).
listener_pid() {
    local hex inode hit tables=()
    hex="$(printf '%04X' "$1")"
    # tcp6 is absent where IPv6 is off.
    for hit in /proc/net/tcp /proc/net/tcp6; do [[ -r "$hit" ]] && tables+=("$hit"); done
    inode="$(awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10; exit }' \
        "${tables[@]}")"
    [[ -n "$inode" ]] || return 1
    hit="$(find /proc/[0-9]*/fd -lname "socket:\[$inode\]" -print -quit 2>/dev/null || true)"
    if [[ -z "$hit" ]]; then
        echo "?"
    else
        hit="${hit#/proc/}"
        echo "${hit%%/*}"
    fi
}

# Stops process $1 and waits until it is gone: SIGTERM, then SIGKILL after $2 seconds (default 10).
stop_pid() {
    local pid="$1" grace="${2:-10}"
    alive_pid "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((grace * 5))); do
        alive_pid "$pid" || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 25); do
        alive_pid "$pid" || return 0
        sleep 0.2
    done
    return 1
}

# Waits up to 10 s for TCP port $1 to be free.
wait_port_free() {
    for _ in $(seq 1 50); do
        listener_pid "$1" >/dev/null || return 0
        sleep 0.2
    done
    return 1
}
