#!/usr/bin/env bash
# A one-node Slurm for development and CI: two partitions (`alpha`, `beta`) over this machine, each
# standing for one simulated provider. Debian 12's slurm-wlm (22.05) and munge, no systemd needed.
#
#   bash scripts/slurm.sh install-and-start   # install if missing, write var/slurm/slurm.conf, start
#   bash scripts/slurm.sh stop                # drain the queue, stop slurmd, slurmctld and munged
#   bash scripts/slurm.sh status              # what is running
#   bash scripts/slurm.sh env                 # prints: export SLURM_CONF=...
#
# Needs root (apt-get, munged as user munge, slurmd running jobs). Idempotent: running it again with
# the daemons up only says so. Every Slurm client command needs SLURM_CONF; see `env`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="${METASCHEDULER_SLURM_DIR:-$ROOT/var/slurm}"
CONF="$VAR/slurm.conf"
export SLURM_CONF="$CONF"

say() { printf '[slurm.sh] %s\n' "$*"; }
die() { printf '[slurm.sh] error: %s\n' "$*" >&2; exit 1; }

# A daemon is alive if its pid exists and is not a zombie: in containers whose PID 1 does not reap,
# dead daemons linger as zombies and `kill -0` would still succeed.
alive_pid() {
    local pid="$1"
    [[ -n "$pid" && -r "/proc/$pid/status" ]] || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status"
}

alive_pidfile() {
    [[ -r "$1" ]] || return 1
    alive_pid "$(tr -d '[:space:]' <"$1")"
}

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
    local host cpus mem_mb
    host="$(hostname -s)"
    cpus="$(nproc)"
    # Leave some memory to the system; slurmd drains a node that has less than RealMemory says.
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 95 / 100 ))
    mkdir -p "$VAR/state" "$VAR/spool" "$VAR/log" "$VAR/run" "$VAR/jobs"
    cat >"$CONF" <<EOF
# Written by scripts/slurm.sh install-and-start; rewritten on each start while Slurm is down.
ClusterName=metascheduler
SlurmctldHost=$host
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
    say "wrote $CONF (node $host, $cpus CPUs, $mem_mb MB, partitions alpha and beta)"
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

start() {
    install_packages
    start_munge
    if alive_pidfile "$VAR/run/slurmctld.pid" && alive_pidfile "$VAR/run/slurmd.pid"; then
        say "slurmctld and slurmd already running with $CONF"
        wait_node_ready
        cmd_env
        return
    fi
    if ! alive_pidfile "$VAR/run/slurmctld.pid"; then
        write_conf
        say "starting slurmctld"
        slurmctld -f "$CONF"
        for _ in $(seq 1 100); do
            scontrol ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        scontrol ping >/dev/null 2>&1 || die "slurmctld did not answer: see $VAR/log/slurmctld.log"
    fi
    if ! alive_pidfile "$VAR/run/slurmd.pid"; then
        say "starting slurmd"
        slurmd -f "$CONF"
    fi
    wait_node_ready
    cmd_env
}

stop() {
    if ! alive_pidfile "$VAR/run/slurmctld.pid" && ! alive_pidfile "$VAR/run/slurmd.pid"; then
        say "slurm is not running"
    else
        if alive_pidfile "$VAR/run/slurmctld.pid"; then
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
        fi
        for f in slurmd slurmctld; do
            local pidfile="$VAR/run/$f.pid"
            for _ in $(seq 1 50); do alive_pidfile "$pidfile" || break; sleep 0.2; done
            if alive_pidfile "$pidfile"; then
                say "$f still running; sending SIGTERM"
                kill "$(cat "$pidfile")" || true
            fi
        done
        say "slurm stopped"
    fi
    if alive_pidfile /run/munge/munged.pid; then
        say "stopping munged"
        kill "$(cat /run/munge/munged.pid)" || true
    fi
}

status() {
    local any=0
    for f in slurmctld slurmd; do
        if alive_pidfile "$VAR/run/$f.pid"; then
            say "$f running (pid $(cat "$VAR/run/$f.pid"))"
            any=1
        else
            say "$f not running"
        fi
    done
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
