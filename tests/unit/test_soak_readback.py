"""The soak's wait for the providers' shipping backlog before it reads results back: on while
logs keep closing or chunks keep arriving, however long that takes; over at a stall."""

from __future__ import annotations

from typing import Any

from metascheduler.devnet.soak.readback import wait_for_final_logs


class FakeSummaries:
    """A fake of the API's public results summary: job -> a script of (chunks, final) answers,
    one per look, the last repeated."""

    def __init__(self, script: dict[int, list[tuple[int, bool]]]) -> None:
        self.script = script
        self.looks: dict[int, int] = dict.fromkeys(script, 0)
        self.closed = False

    def summary(self, job_id: int) -> dict[str, Any]:
        answers = self.script[job_id]
        chunks, final = answers[min(self.looks[job_id], len(answers) - 1)]
        self.looks[job_id] += 1
        return {"log": {"chunks": chunks, "final": final}}

    def close(self) -> None:
        self.closed = True


def test_the_wait_follows_a_backlog_that_drains_slowly() -> None:
    # Job 2's log takes many looks to close, one chunk at a time: longer than the stall bound
    # in all, but never a stall.
    api = FakeSummaries({1: [(3, True)], 2: [(n, False) for n in range(12)] + [(12, True)]})
    left = wait_for_final_logs(api, [1, 2], stall_s=0.05, poll_s=0.01)  # type: ignore[arg-type]
    assert left == []
    assert api.looks[2] == 13 and api.looks[1] == 1
    assert api.closed


def test_the_wait_ends_at_a_stall_with_the_logs_still_open() -> None:
    api = FakeSummaries({1: [(3, True)], 2: [(1, False)]})
    left = wait_for_final_logs(api, [1, 2], stall_s=0.05, poll_s=0.01)  # type: ignore[arg-type]
    assert left == [2]
