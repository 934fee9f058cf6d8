"""Staging a job before it starts, while it is SCHEDULED and not billed: its input files into
its folder and its image into the runtime, each checked against the digest its spec pins.

Whatever fails (a digest mismatch, a file over the provider's cap, an unreachable URL, a fetch
past its deadline, an image the runtime refuses) raises ``StagingError`` with the reason in
words: the agent refuses the placement with it, and the customer pays nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from metascheduler.agent.envelope.cache import ImageCache
from metascheduler.agent.envelope.fetch import FetchError, fetch
from metascheduler.agent.envelope.runtime import ContainerRuntime, RuntimeFailure
from metascheduler.spec import JobSpec


class StagingError(Exception):
    """The job cannot be staged; the message is the refusal's reason."""


@dataclass(frozen=True)
class StagingLimits:
    """A provider's caps (its ``[staging]`` settings)."""

    max_input_bytes: int = 1 << 30
    max_image_bytes: int = 2 << 30
    fetch_timeout_s: float = 300.0


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

    def inputs(self, spec: JobSpec, work: Path, owner: tuple[int, int] | None) -> None:
        """Fetches every input into ``work`` (owned by ``owner``, the job user, if given)."""
        for item in spec.inputs or ():
            dest = work / item.path
            try:
                fetch(
                    item.url,
                    item.sha256,
                    dest,
                    max_bytes=self.limits.max_input_bytes,
                    timeout_s=self.limits.fetch_timeout_s,
                )
            except FetchError as exc:
                raise StagingError(f"input {item.path}: {exc}") from None
            if owner is not None:
                # Folders made for it, then the file: the job may read and replace them.
                for p in [*reversed(dest.relative_to(work).parents), Path(item.path)]:
                    if str(p) != ".":
                        os.chown(work / p, *owner)

    def image(self, spec: JobSpec) -> tuple[str, bool] | None:
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
                timeout_s=self.limits.fetch_timeout_s,
                evicted=runtime.forget,
            )
            if cached and runtime.has(digest):
                return runtime.reference(digest), True
            return runtime.load(path, digest), cached
        except FetchError as exc:
            raise StagingError(f"image: {exc}") from None
        except RuntimeFailure as exc:
            raise StagingError(f"image {container.image}: {exc}") from None
