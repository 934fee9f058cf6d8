#!/usr/bin/env bash
# Records real outputs of the Slurm commands the backend parses, from the one-node Slurm that
# scripts/slurm.sh starts. Takes about 90 s (Slurm checks time limits every 30 s).
# Re-run after a Slurm upgrade, then run tests/unit/test_slurm_parsers.py:
#   eval "$(bash scripts/slurm.sh env)" && bash tests/data/slurm/capture.sh
# The formats below must stay equal to those in src/metascheduler/agent/backends/slurm.py.
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
SQUEUE_FMT='%i|%T|%r|%S|%e|%l|%P|%j'
SACCT_FMT='JobID,State,ExitCode,Start,End,Partition,JobName'
SINFO_FIELDS='NodeHost:|,CPUsState:|,Memory:|,AllocMem:|,Gres:|,GresUsed:|,StateLong:'
cd "$WORK"
sb() { sbatch --parsable --no-requeue -p alpha -o "$WORK/%j.out" "$@"; }

sbatch --version >"$OUT/version.txt"
ok=$(sb -J ms-101 --wrap 'echo hello')
fail=$(sb -J ms-102 --wrap 'exit 3')
cancel=$(sb -J ms-103 --wrap 'sleep 300')
timeout=$(sb -J ms-104 --time=1 --wrap 'sleep 300')
# Fills the node so the next one pends: 2 CPUs on the CI and dev machines; skipped if larger.
big=$(sb -J ms-105 -c "$(nproc)" --time=2 --wrap 'sleep 300')
sb -J ms-106 --wrap 'true' >"$OUT/sbatch_ok.txt"
set +e
sbatch --parsable -J ms-107 -p alpha -c 999 --wrap true >"$OUT/sbatch_too_many_cpus.stdout" 2>"$OUT/sbatch_too_many_cpus.stderr"
echo $? >"$OUT/sbatch_too_many_cpus.rc"
sbatch --parsable -J ms-107 -p nope --wrap true >"$OUT/sbatch_bad_partition.stdout" 2>"$OUT/sbatch_bad_partition.stderr"
echo $? >"$OUT/sbatch_bad_partition.rc"
sbatch --parsable -J ms-107 -p alpha --gres=gpu:1 --wrap true >"$OUT/sbatch_no_gpu.stdout" 2>"$OUT/sbatch_no_gpu.stderr"
echo $? >"$OUT/sbatch_no_gpu.rc"
squeue --noheader --states=all --jobs=999999 --format="$SQUEUE_FMT" >"$OUT/squeue_unknown_id.stdout" 2>"$OUT/squeue_unknown_id.stderr"
echo $? >"$OUT/squeue_unknown_id.rc"
set -e
sleep 3
scancel "$cancel"
sleep 2
squeue --noheader --states=all --format="$SQUEUE_FMT" >"$OUT/squeue_mixed.txt"
scontrol update JobId="$big" TimeLimit=7
scontrol show job -o "$big" >"$OUT/scontrol_show_job.txt"
sinfo --noheader --Node --partition=alpha --Format="$SINFO_FIELDS" >"$OUT/sinfo_capacity.txt"
set +e
scancel 999999 >"$OUT/scancel_unknown.stdout" 2>"$OUT/scancel_unknown.stderr"; echo $? >"$OUT/scancel_unknown.rc"
scontrol update JobId="$ok" TimeLimit=9 >"$OUT/scontrol_update_ended.stdout" 2>"$OUT/scontrol_update_ended.stderr"; echo $? >"$OUT/scontrol_update_ended.rc"
set -e
echo "waiting for job $timeout to time out (up to 100 s)"
for _ in $(seq 1 50); do
    [[ "$(squeue -h -t all -j "$timeout" -o %T)" == TIMEOUT ]] && break
    sleep 2
done
scancel "$big" || true
sleep 2
squeue --noheader --states=all --format="$SQUEUE_FMT" >"$OUT/squeue_ended.txt"
sacct -c --parsable2 --noheader --jobs="$ok,$fail,$cancel,$timeout,$big" --format="$SACCT_FMT" >"$OUT/sacct_jobcomp.txt"
echo "recorded into $OUT (jobs ok=$ok fail=$fail cancel=$cancel timeout=$timeout big=$big)"
