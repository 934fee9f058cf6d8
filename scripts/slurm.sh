#!/usr/bin/env bash
# A one-node Slurm for development and CI: two partitions (`alpha`, `beta`) over this machine, each
# standing for one simulated provider. Debian 12's slurm-wlm (22.05) and munge, no systemd needed.
#
#   bash scripts/slurm.sh install-and-start   # install if missing, write var/slurm/slurm.conf, start
#   bash scripts/slurm.sh stop                # drain the queue, stop this clone's slurmd and slurmctld
#   bash scripts/slurm.sh status              # what is running
#   bash scripts/slurm.sh env                 # prints: export SLURM_CONF=...
#
# Needs root (apt-get, munged as user munge, slurmd running jobs); the daemons run as root, so their
# state stays in the clone (var/slurm) even when the clone sits in a private folder. Every Slurm
# client command needs SLURM_CONF (see `env`): the file names this clone's ports.
#
# Several clones share one machine (and one munged): each clone runs its own slurmctld and slurmd
# on its own ports. Running it again reuses the daemons only when they run from this clone's
# slurm.conf and the controller answers with this clone's state folder; otherwise they are
# restarted. A port held by the daemons of a deleted clone (their slurm.conf or state folder gone)
# is freed by stopping them; a port held by anything else is left alone and the next pair taken
# (first pair: MS_SLURMCTLD_PORT, default 6817, and the port after it). It says what it did.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/daemons.sh
. "$ROOT/scripts/daemons.sh"
VAR="${METASCHEDULER_SLURM_DIR:-$ROOT/var/slurm}"
CONF="$VAR/slurm.conf"
export SLURM_CONF="$CONF"
#: slurmctld's port when this clone has none yet; slurmd takes the next one.
DEFAULT_CTLD_PORT="${MS_SLURMCTLD_PORT:-6817}"

say() { printf '[slurm.sh] %s\n' "$*"; }
die() { printf '[slurm.sh] error: %s\n' "$*" >&2; exit 1; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        say "slurm-wlm and munge already installed ($(slurmctld -V 2>/dev/null || echo '?'))"
        return
    fi
    [[ $EUID -eq 0 ]] || die "installing needs root: run 'sudo bash scripts/slurm.sh install-and-start'"
    say "installing slurm-wlm and munge from Debian (about 15 s)"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have empty package lists: only refresh them when the first try fails.
    if ! apt-get install -y -q slurm-wlm munge >/dev/null; then
        say "apt-get install failed; refreshing package lists and retrying"
        apt-get update -q >/dev/null
        apt-get install -y -q slurm-wlm munge >/dev/null
    fi
    say "installed $(slurmctld -V)"
}

start_munge() {
    if alive_pidfile /run/munge/munged.pid; then
        say "munged already running (pid $(cat /run/munge/munged.pid))"
        return
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    say "starting munged"
    # --force: a stale socket left by a munged that died uncleanly would otherwise stop it.
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 1 50); do
        munge -n >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "munged did not answer: see /var/log/munge/munged.log"
}

# Slurm 22.05 enforces a job's memory (OUT_OF_MEMORY) and CPUs (its cpuset) with task/cgroup on
# cgroup v1, as on this kind of machine; its cgroup/v2 plugin needs systemd. Where v1 is missing,
# jobs are still held to what they paid for by the agent's sandbox, nested in the job's cgroup.
# Prints the slurm.conf lines, and writes cgroup.conf next to it when task/cgroup is used.
cgroup_lines() {
    if [[ -d /sys/fs/cgroup/memory && -d /sys/fs/cgroup/cpuset && -d /sys/fs/cgroup/freezer ]]; then
        printf 'CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nConstrainCores=yes\nConstrainRAMSpace=yes\nConstrainSwapSpace=yes\nAllowedSwapSpace=0\n' >"$VAR/cgroup.conf"
        printf 'ProctrackType=proctrack/cgroup\nTaskPlugin=task/cgroup,task/affinity\nJobAcctGatherType=jobacct_gather/cgroup\n'
    else
        rm -f "$VAR/cgroup.conf"
        printf 'ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n'
    fi
}

write_conf() {
    local ctld_port="$1" slurmd_port="$2" host cpus mem_mb
    host="$(hostname -s)"
    cpus="$(nproc)"
    # Leave some memory to the system; slurmd drains a node that has less than RealMemory says.
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 95 / 100 ))
    mkdir -p "$VAR/state" "$VAR/spool" "$VAR/log" "$VAR/run" "$VAR/jobs"
    cat >"$CONF" <<EOF
# Written by scripts/slurm.sh install-and-start; rewritten on each start while Slurm is down.
ClusterName=metascheduler
SlurmctldHost=$host
# This clone's own ports: another clone's Slurm may run on this machine too.
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$VAR/state
SlurmdSpoolDir=$VAR/spool
SlurmctldPidFile=$VAR/run/slurmctld.pid
SlurmdPidFile=$VAR/run/slurmd.pid
SlurmctldLogFile=$VAR/log/slurmctld.log
SlurmdLogFile=$VAR/log/slurmd.log
$(cgroup_lines)
MpiDefault=none
# Cores and memory are both consumable, so the two partitions really share one node's capacity.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
# No slurmdbd: finished jobs go to a text file that \`sacct -c\` reads.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$VAR/jobcomp.log
# Without batch_sched_delay=0 back-to-back jobs wait about 3 s each.
SchedulerParameters=batch_sched_delay=0
# Short grace between SIGTERM and SIGKILL on cancel and time-out; finished jobs stay in squeue 5 min.
KillWait=5
MinJobAge=300
ReturnToService=2
# Refuse at submission a job that can never run here (too many CPUs, too much memory, bad partition)
# instead of letting it pend forever.
EnforcePartLimits=ALL
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=alpha Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=beta Nodes=$host Default=NO MaxTime=INFINITE State=UP
EOF
    say "wrote $CONF (node $host, $cpus CPUs, $mem_mb MB, partitions alpha and beta, ports $ctld_port and $slurmd_port)"
}

# The value of KEY $1 in slurm.conf file $2.
conf_value() {
    [[ -r "$2" ]] && awk -F= -v k="$1" '$1 == k { print $2; found = 1; exit } END { exit !found }' "$2"
}

# The slurm.conf a Slurm daemon $1 runs from (its `-f`, else Slurm's default).
conf_of() {
    arg_of "$1" -f || echo /etc/slurm/slurm.conf
}

is_slurm_daemon() {
    local comm
    comm="$(cat "/proc/$1/comm" 2>/dev/null || true)"
    [[ "$comm" == slurmctld || "$comm" == slurmd ]]
}

# Prints the pid of this clone's daemon $1 (slurmctld or slurmd): alive, named in this clone's
# pid file and started with this clone's slurm.conf.
our_daemon() {
    local pid
    alive_pidfile "$VAR/run/$1.pid" || return 1
    pid="$(tr -d '[:space:]' <"$VAR/run/$1.pid")"
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1" && "$(conf_of "$pid")" == "$CONF" ]] || return 1
    echo "$pid"
}

# Whether the controller on this clone's port is this clone's: it reports this clone's state folder.
controller_is_ours() {
    [[ "$(scontrol show config 2>/dev/null | awk '$1 == "StateSaveLocation" { print $3 }')" == "$VAR/state" ]]
}

# Whether Slurm daemon $1 belongs to a clone that is gone: its slurm.conf, state folder or spool
# folder no longer exists.
daemon_of_deleted_clone() {
    local conf dir
    is_slurm_daemon "$1" || return 1
    conf="$(conf_of "$1")"
    [[ -f "$conf" ]] || return 0
    for dir in "$(conf_value StateSaveLocation "$conf")" "$(conf_value SlurmdSpoolDir "$conf")"; do
        [[ -z "$dir" || -d "$dir" ]] || return 0
    done
    return 1
}

# Stops every slurmctld and slurmd running from slurm.conf $1.
stop_daemons_of() {
    local comm_file pid
    for comm_file in /proc/[0-9]*/comm; do
        pid="${comm_file#/proc/}"
        pid="${pid%/comm}"
        is_slurm_daemon "$pid" && [[ "$(conf_of "$pid")" == "$1" ]] || continue
        say "stopping $(cat "$comm_file") (pid $pid) of $1"
        stop_pid "$pid" || say "pid $pid did not stop"
    done
}

slurm_daemons_running() {
    local comm_file pid
    for comm_file in /proc/[0-9]*/comm; do
        pid="${comm_file#/proc/}"
        is_slurm_daemon "${pid%/comm}" && return 0
    done
    return 1
}

# Whether TCP port $1 can be this clone's: free, or freed by stopping a deleted clone's daemons.
port_usable() {
    local pid conf
    pid="$(listener_pid "$1")" || return 0
    if [[ "$pid" != "?" ]] && daemon_of_deleted_clone "$pid"; then
        conf="$(conf_of "$pid")"
        say "port $1 is held by $(cat "/proc/$pid/comm") (pid $pid) of a deleted clone ($conf or its state folder is gone): stopping its daemons"
        stop_daemons_of "$conf"
        wait_port_free "$1" && return 0
    fi
    say "port $1 is held by pid $pid ($(cmdline_of "$pid" | cut -c1-100))"
    return 1
}

# Prints two ports for slurmctld and slurmd: this clone's previous ones if still usable, else the
# first usable pair from DEFAULT_CTLD_PORT on.
pick_ports() {
    local first port
    first="$(conf_value SlurmctldPort "$CONF" || true)"
    if [[ -n "${MS_SLURMCTLD_PORT:-}" || -z "$first" ]]; then first="$DEFAULT_CTLD_PORT"; fi
    for port in $(seq "$first" 2 $((first + 40))); do
        if port_usable "$port" >&2 && port_usable $((port + 1)) >&2; then
            echo "$port $((port + 1))"
            return
        fi
        say "trying ports $((port + 2)) and $((port + 3))" >&2
    done
    die "no two free ports in $first..$((first + 41))"
}

wait_node_ready() {
    local host state
    host="$(hostname -s)"
    for i in $(seq 1 150); do
        state="$(sinfo -h -N -n "$host" -o '%T' 2>/dev/null | head -n1 || true)"
        case "$state" in
            idle | mixed | allocated | completing)
                say "node $host is $state; partitions: $(sinfo -h -o '%P' | tr '\n' ' ')"
                return
                ;;
            drain* | down* | fail*)
                # Left over from an unclean stop: the node is fine, tell slurmctld so.
                if ((i % 10 == 1)); then
                    say "node $host is $state; resuming it"
                    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
                fi
                ;;
        esac
        sleep 0.2
    done
    die "node $host not ready after 30 s (state '${state:-none}'): see $VAR/log/slurmctld.log and slurmd.log"
}

# Stops this clone's daemons without asking the controller (it may not answer).
kill_ours() {
    local name pid
    for name in slurmd slurmctld; do
        if pid="$(our_daemon "$name")"; then
            say "stopping $name (pid $pid)"
            stop_pid "$pid" || die "$name (pid $pid) did not stop"
        fi
    done
}

start() {
    install_packages
    start_munge
    local ctld slurmd ports
    ctld="$(our_daemon slurmctld || true)"
    slurmd="$(our_daemon slurmd || true)"
    if [[ -n "$ctld" && -n "$slurmd" && -w "$VAR/state" && -w "$VAR/spool" ]] && controller_is_ours; then
        say "reusing this clone's slurmctld (pid $ctld) and slurmd (pid $slurmd) on ports $(conf_value SlurmctldPort "$CONF" || echo 6817) and $(conf_value SlurmdPort "$CONF" || echo 6818)"
        wait_node_ready
        cmd_env
        return
    fi
    if [[ -n "$ctld" || -n "$slurmd" ]]; then
        say "this clone's Slurm is only partly up or does not answer: restarting it"
        kill_ours
    fi
    ports="$(pick_ports)"
    write_conf "${ports% *}" "${ports#* }"
    say "starting slurmctld"
    slurmctld -f "$CONF"
    for _ in $(seq 1 100); do
        controller_is_ours && break
        sleep 0.1
    done
    controller_is_ours || die "slurmctld did not answer on port ${ports% *}: see $VAR/log/slurmctld.log"
    say "starting slurmd"
    slurmd -f "$CONF"
    wait_node_ready
    cmd_env
}

stop() {
    if [[ -z "$(our_daemon slurmctld || true)" && -z "$(our_daemon slurmd || true)" ]]; then
        say "this clone's Slurm is not running"
    else
        if our_daemon slurmctld >/dev/null && controller_is_ours; then
            # Drain first: with jobs still running, slurmd retries its messages for about 10 s.
            local jobs
            jobs="$(squeue -h -o '%i' 2>/dev/null | tr '\n' ' ' || true)"
            if [[ -n "${jobs// /}" ]]; then
                say "cancelling jobs: $jobs"
                # shellcheck disable=SC2086
                scancel $jobs || true
                for _ in $(seq 1 100); do
                    [[ -z "$(squeue -h -t RUNNING,COMPLETING,PENDING -o '%i' 2>/dev/null)" ]] && break
                    sleep 0.2
                done
            fi
            say "stopping slurmctld and slurmd"
            scontrol shutdown >/dev/null 2>&1 || true
            for _ in $(seq 1 50); do
                our_daemon slurmctld >/dev/null || our_daemon slurmd >/dev/null || break
                sleep 0.2
            done
        fi
        kill_ours
        say "slurm stopped"
    fi
    # One munged serves every clone's Slurm on this machine: stop it only when none is left.
    if alive_pidfile /run/munge/munged.pid && ! slurm_daemons_running; then
        say "stopping munged"
        kill "$(cat /run/munge/munged.pid)" || true
    fi
}

status() {
    local any=0 name pid
    for name in slurmctld slurmd; do
        if pid="$(our_daemon "$name")"; then
            say "$name running (pid $pid)"
            any=1
        else
            say "$name not running"
        fi
    done
    say "ports: slurmctld $(conf_value SlurmctldPort "$CONF" || echo '?'), slurmd $(conf_value SlurmdPort "$CONF" || echo '?')"
    alive_pidfile /run/munge/munged.pid && say "munged running" || say "munged not running"
    if ((any)); then sinfo || true; fi
}

cmd_env() {
    echo "export SLURM_CONF=$CONF"
}

main() {
    case "${1:-}" in
        install-and-start | start) start ;;
        stop) stop ;;
        status) status ;;
        env) cmd_env ;;
        *)
            echo "usage: bash scripts/slurm.sh {install-and-start|stop|status|env}" >&2
            exit 2
            ;;
    esac
}

main "$@"
