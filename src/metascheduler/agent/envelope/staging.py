"""Staging a job before it starts, while it is SCHEDULED and not billed: its input files into
its folder and its image into the runtime, each checked against the digest its spec pins.

Whatever fails (a digest mismatch, a file over the provider's cap, an unreachable URL, a fetch
past its deadline, an image the runtime refuses) raises ``StagingError`` with the reason in
words: the agent refuses the placement with it, and the customer pays nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from metascheduler.agent.envelope.cache import ImageCache
from metascheduler.agent.envelope.fetch import FetchError, fetch
from metascheduler.agent.envelope.runtime import ContainerRuntime, RuntimeFailure
from metascheduler.errors import MetaschedulerError
from metascheduler.spec import JobSpec


class StagingError(MetaschedulerError):
    """The job cannot be staged; the message is the refusal's reason."""

    kind = "staging"


@dataclass(frozen=True)
class StagingLimits:
    """A provider's caps (its ``[staging]`` settings)."""

    max_input_bytes: int = 1 << 30
    max_image_bytes: int = 2 << 30
    #: For all of one job's fetches together: staging runs in the agent's round, which must
    #: stay well within the oracle's heartbeat timeout.
    fetch_timeout_s: float = 120.0


@dataclass
class Stager:
    limits: StagingLimits
    cache: ImageCache | None = None
    runtime: ContainerRuntime | None = None

    def problems(self, spec: JobSpec) -> list[str]:
        """Why this provider cannot run the spec's container at all, in words."""
        if spec.container is None:
            return []
        if self.runtime is None or self.cache is None:
            return ["this provider runs no container runtime"]
        return self.runtime.problems()

    def stage(self, spec: JobSpec, work: Path, owner: tuple[int, int] | None) -> bool | None:
        """Fetches the inputs into ``work`` (owned by ``owner``, the job user, if given) and
        brings the image in, all within ``fetch_timeout_s``. Returns whether the image came
        from the cache (None: no image)."""
        deadline = time.monotonic() + self.limits.fetch_timeout_s
        self.inputs(spec, work, owner, deadline)
        image = self.image(spec, deadline)
        return None if image is None else image[1]

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StagingError(
                f"staging took longer than this provider's {self.limits.fetch_timeout_s:g} s"
            )
        return left

    def inputs(
        self, spec: JobSpec, work: Path, owner: tuple[int, int] | None, deadline: float
    ) -> None:
        for item in spec.inputs or ():
            dest = work / item.path
            try:
                fetch(
                    item.url,
                    item.sha256,
                    dest,
                    max_bytes=self.limits.max_input_bytes,
                    timeout_s=self._left(deadline),
                )
            except FetchError as exc:
                raise StagingError(f"input {item.path}: {exc}") from None
            if owner is not None:
                # Folders made for it, then the file: the job may read and replace them.
                for p in [*reversed(dest.relative_to(work).parents), Path(item.path)]:
                    if str(p) != ".":
                        os.chown(work / p, *owner)

    def image(self, spec: JobSpec, deadline: float) -> tuple[str, bool] | None:
        """The reference the job's image runs by, and whether it came from the cache; None
        for a job without a container."""
        container = spec.container
        if container is None:
            return None
        problems = self.problems(spec)
        if problems:
            raise StagingError("cannot run containers: " + "; ".join(problems))
        assert self.runtime is not None and self.cache is not None
        runtime, digest = self.runtime, container.digest
        url = container.archive_url
        try:
            if url is None:
                cached = runtime.has(digest)
                return (
                    runtime.reference(digest) if cached else runtime.pull(container.image, digest)
                ), cached
            path, cached = self.cache.archive(
                url,
                digest,
                max_bytes=self.limits.max_image_bytes,
                timeout_s=self._left(deadline),
                evicted=runtime.forget,
            )
            if cached and runtime.has(digest):
                return runtime.reference(digest), True
            return runtime.load(path, digest), cached
        except FetchError as exc:
            raise StagingError(f"image: {exc}") from None
        except RuntimeFailure as exc:
            raise StagingError(f"image {container.image}: {exc}") from None
