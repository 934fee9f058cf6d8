#!/usr/bin/env bash
# Slither on the contracts (contracts/src only), through the project's own Foundry build.
#
#   bash scripts/slither.sh            # analyse; exit 1 on any untriaged high or medium finding
#
# Prints every finding (all impacts), then a summary line per impact. Fails (exit 1) if a high
# or medium finding is left: each one must be fixed, or triaged in the repo, either with a
# `// slither-disable-next-line <detector>` above the line (with a comment saying why) or by
# excluding its detector in slither.config.json with the reason in docs/security.md
# ("Static analysis (Slither)"). Exit 2: the analysis itself failed (compile error, crash).
#
# How it works here, and why (there is no native solc on this machine, see notes/toolchain.md):
# - crytic-compile's `foundry` framework runs `forge clean` and `forge build --build-info --force
#   --skip contracts/test/**` itself, with FOUNDRY_SOLC pointing at scripts/solc (solc-js) and
#   forge found on PATH (node_modules/.bin). It never needs a solc binary of its own.
# - That `forge clean` would wipe the shared `out/` that tests and the Python package read, so
#   this script points forge at a private build folder through FOUNDRY_OUT/FOUNDRY_CACHE_PATH
#   (crytic-compile reads the folder back from `forge config --json`, which honours them).
# - Slither lives in its own virtualenv (var/slither-venv), not in .venv: slither-analyzer
#   0.11.6 requires web3<8 and the project requires web3 8, so the two cannot share an env.
#   The venv is created here on first use, from PyPI, at a pinned version.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SLITHER_VERSION="0.11.6"
VENV="${METASCHEDULER_SLITHER_VENV:-$ROOT/var/slither-venv}"
BUILD="$ROOT/var/slither"
RESULTS="$BUILD/results.json"

say() { printf '[slither.sh] %s\n' "$*" >&2; }
die() { printf '[slither.sh] error: %s\n' "$*" >&2; exit 2; }

[[ -x "$ROOT/node_modules/.bin/forge" ]] || die "forge not found in node_modules/.bin: run 'make deps' first"

if [[ "$("$VENV/bin/slither" --version 2>/dev/null || true)" != "$SLITHER_VERSION" ]]; then
    say "installing slither-analyzer==$SLITHER_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "slither-analyzer==$SLITHER_VERSION" \
        || die "pip could not install slither-analyzer==$SLITHER_VERSION into $VENV"
fi

export FOUNDRY_SOLC="$ROOT/scripts/solc"
export PATH="$ROOT/node_modules/.bin:$PATH"
export FOUNDRY_OUT="$BUILD/out" FOUNDRY_CACHE_PATH="$BUILD/cache"
mkdir -p "$BUILD"
rm -f "$RESULTS"

# Settings (framework, paths filtered out, excluded detectors) are in slither.config.json.
# `--fail-none`: the gate below decides, so that a crash is told apart from findings.
set +e
"$VENV/bin/slither" . --config-file slither.config.json --fail-none --json "$RESULTS"
rc=$?
set -e
if [[ $rc -ne 0 || ! -s "$RESULTS" ]]; then
    die "slither failed (exit $rc) before reporting; its output is above"
fi

"$VENV/bin/python" - "$RESULTS" <<'EOF'
import collections
import json
import sys

data = json.load(open(sys.argv[1]))
if not data.get("success"):
    print(f"[slither.sh] error: slither reported failure: {data.get('error')}", file=sys.stderr)
    sys.exit(2)
found = data.get("results", {}).get("detectors", [])
counts = collections.Counter(f["impact"] for f in found)
blocking = [f for f in found if f["impact"] in ("High", "Medium")]
print("\n[slither.sh] summary (contracts/src): " + ", ".join(
    f"{impact.lower()} {counts.get(impact, 0)}"
    for impact in ("High", "Medium", "Low", "Informational", "Optimization")
))
for f in blocking:
    first = f["description"].strip().splitlines()[0]
    print(f"[slither.sh] UNTRIAGED {f['impact'].lower()} {f['check']}: {first}")
if blocking:
    print(
        "[slither.sh] fix each finding above, or triage it: `// slither-disable-next-line "
        "<detector>` with a reason, or a detector exclusion in slither.config.json with its "
        "reason in docs/security.md",
        file=sys.stderr,
    )
    sys.exit(1)
print("[slither.sh] ok: no untriaged high or medium finding")
EOF
