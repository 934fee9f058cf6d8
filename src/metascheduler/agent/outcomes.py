"""The exit code the agent reports on chain (``completeJob``, an int32) for a job that ended.

Codes >= 0 are the job's own (128 + N when a signal N killed it), as the backend reports them:
0 ends the job FINISHED, anything else FAILED. Negative codes are the agent's, for endings
where the job itself gave none:

=====  ===================================================================================
code   meaning
=====  ===================================================================================
 -2    ``EXIT_LOST``: the backend has no record of a job the chain says is running (lost
       while the agent was down, purged, or its node died without a trace).
 -3    ``EXIT_TIMEOUT``: the backend killed the job at its time limit while the escrow still
       paid for more (the limit could not be extended in time). When the escrow is spent,
       the job ends OUT_OF_CREDITS instead, with no code from the agent.
 -4    ``EXIT_KILLED``: the job was cancelled on the backend, not by the agent (an operator's
       ``scancel``, say).
 -5    ``EXIT_NO_CODE``: the backend says the job failed but gives no exit code.
=====  ===================================================================================

-1 is not used: the contract records -1 for endings without a provider's report (cancelled,
out of credits, failed by the oracle).
"""

from __future__ import annotations

from metascheduler.agent.backends import BackendJobInfo, BackendStatus

EXIT_LOST = -2
EXIT_TIMEOUT = -3
EXIT_KILLED = -4
EXIT_NO_CODE = -5

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def exit_code(info: BackendJobInfo) -> int:
    """The code to report for a job whose backend state is terminal (TIMEOUT included: the
    caller first checks whether the escrow ran out, which is not the provider's report)."""
    s = info.status
    if s is BackendStatus.COMPLETED:
        return 0 if info.exit_code is None else _int32(info.exit_code)
    if s is BackendStatus.FAILED:
        # A failure must never read as success: a backend saying FAILED with code 0 (Slurm's
        # NODE_FAIL can) is reported without a code.
        if not info.exit_code:
            return EXIT_NO_CODE
        return _int32(info.exit_code)
    if s is BackendStatus.TIMEOUT:
        return EXIT_TIMEOUT
    if s is BackendStatus.CANCELLED:
        return EXIT_KILLED
    if s is BackendStatus.LOST:
        return EXIT_LOST
    raise ValueError(f"backend state {s} has not ended: no exit code yet")


def _int32(code: int) -> int:
    return max(INT32_MIN, min(INT32_MAX, code))
