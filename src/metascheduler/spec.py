"""The job spec: what a customer asks to run, and the exact bytes that travel on chain.

A user writes a small YAML (or JSON) file, documented in ``docs/job-spec.md``::

    name: hello
    resources: {tasks: 1, cpus_per_task: 2, mem_per_cpu_mb: 512}
    command: ["echo", "hello"]

Version 2 adds a container image and input files, each pinned by its SHA-256 (``container``,
``inputs``); a version 1 spec reads and encodes exactly as before.

``load_spec``/``parse_spec`` validate it and raise ``SpecError`` with one human message per problem.
``encode_spec`` turns it into canonical bytes (sorted keys, compact, UTF-8 JSON, defaults filled
in), which the CLI sends with ``requestJob``; the contract keeps their hash and emits them whole,
and the agent and any auditor get the spec back with ``decode_spec``. Canonical means the same spec
always gives the same bytes, so a hash names one spec.

This module is a leaf (it imports nothing of ours): the CLI, agent, oracle and audit all use it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from metascheduler.errors import InputError

SPEC_VERSION: Literal[1] = 1
"""The version a spec without ``container`` or ``inputs`` is written in (and defaults to)."""
MAX_URL = 2048
#: The label of providers that run container jobs.
CONTAINER_LABEL = "container"
MAX_INPUTS = 64
#: Longest name of one file or folder, in UTF-8 bytes (Linux file systems' NAME_MAX).
MAX_NAME_BYTES = 255
MAX_SPEC_BYTES = 16 * 1024
"""Largest encoded spec: it travels in calldata and in an event, paid for in gas."""
MAX_SOURCE_BYTES = 64 * 1024
"""Largest YAML/JSON file accepted before parsing (comments and whitespace allowed)."""
MAX_SPEC_DEPTH = 8
"""Deepest nesting of mappings and lists read: a valid spec nests 3 levels (``inputs[0].url``).
Checked before anything recursive reads the spec, so that a few kB of ``[[[[`` are refused in
words whatever Python's recursion limit is, not by a ``RecursionError`` far from the input."""
DOCS = "docs/job-spec.md"

# Variables the backends set for every job; a spec may not override them.
RESERVED_ENV_PREFIXES = ("MS_", "SLURM_")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=/+-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HTTP_URL = re.compile(r"^https?://[^\s#]+$")
_ARCHIVE_REF = re.compile(r"^(?P<url>https?://[^\s#]+)#sha256=(?P<digest>[0-9a-f]{64})$")
_REGISTRY_REF = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9._-]*(?::[0-9]+)?(?:/[a-z0-9][a-z0-9._-]*)+)@sha256:(?P<digest>[0-9a-f]{64})$"
)

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]


class SpecError(InputError, ValueError):
    """A spec that cannot be used; ``messages`` holds one human sentence per problem."""

    kind = "invalid-spec"

    def __init__(self, messages: list[str], source: str | None = None) -> None:
        self.messages = list(messages)
        self.source = source
        prefix = f"{source}: " if source else ""
        lines = [f"{prefix}{m}" for m in self.messages]
        super().__init__(
            "invalid job spec:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0]
        )


class _Strict(BaseModel):
    # strict: YAML's `yes` or `5` must not silently become a string, nor "4" an integer.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Resources(_Strict):
    """What one job holds while it runs. Memory is per CPU, like Slurm's ``--mem-per-cpu``."""

    tasks: int = Field(default=1, ge=1, le=100_000)
    cpus_per_task: int = Field(default=1, ge=1, le=1_024)
    mem_per_cpu_mb: int = Field(default=1024, ge=1, le=1_048_576)
    gpus: int = Field(default=0, ge=0, le=1_024)


class Container(_Strict):
    """The image the job runs in, pinned by content: ``https://host/image.tar#sha256=<hex>`` (an
    OCI or docker archive the provider fetches and checks) or ``registry/name@sha256:<hex>``."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL)]

    @field_validator("image")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if not (_ARCHIVE_REF.match(v) or _REGISTRY_REF.match(v)):
            raise ValueError(
                f"{v!r} does not pin the image's content: give "
                "`https://host/image.tar#sha256=<64 hex digits>` or "
                "`registry.example/name@sha256:<64 hex digits>` (lowercase hex)"
            )
        return v

    @property
    def digest(self) -> str:
        m = _ARCHIVE_REF.match(self.image) or _REGISTRY_REF.match(self.image)
        assert m is not None
        return m.group("digest")

    @property
    def archive_url(self) -> str | None:
        """The archive's URL, or None for a registry reference."""
        m = _ARCHIVE_REF.match(self.image)
        return m.group("url") if m else None


class Input(_Strict):
    """A file fetched and checked before the job starts, placed at ``path`` under the job's
    folder."""

    url: Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL)]
    sha256: str
    path: Annotated[str, StringConstraints(min_length=1, max_length=255)]

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not _HTTP_URL.match(v):
            raise ValueError(f"{v!r} is not an http:// or https:// URL (without a #fragment)")
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _SHA256.match(v):
            raise ValueError("must be the file's SHA-256: 64 lowercase hex digits")
        return v

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        parts = v.split("/")
        if v.startswith("/") or any(p in ("", ".", "..") for p in parts) or _CONTROL.search(v):
            raise ValueError(
                f"{v!r} must be a plain relative path under the job's folder (like data/in.csv): "
                "no leading /, no . or .. parts, no empty parts, no control characters"
            )
        longest = max(len(p.encode("utf-8", "surrogatepass")) for p in parts)
        if longest > MAX_NAME_BYTES:
            raise ValueError(
                f"a part of {v[:40]!r}... is {longest} bytes in UTF-8, more than the "
                f"{MAX_NAME_BYTES} any file system takes for one name: shorten it"
            )
        return v


class JobSpec(_Strict):
    """A validated job spec. Build it with ``parse_spec``, ``load_spec`` or ``decode_spec``."""

    version: Literal[1, 2] = SPEC_VERSION
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    resources: Resources = Resources()
    command: list[NonEmptyStr] | NonEmptyStr | None = None
    script: NonEmptyStr | None = None
    env: dict[str, str] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    time_limit_minutes: int | None = Field(default=None, ge=1, le=366 * 24 * 60)
    workdir: NonEmptyStr | None = None
    container: Container | None = None
    inputs: list[Input] | None = None

    @field_validator("name")
    @classmethod
    def _name_printable(cls, v: str) -> str:
        if _CONTROL.search(v):
            raise ValueError("must not contain control characters (newlines, tabs, ...)")
        return v

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, v: list[str] | str | None) -> list[str] | str | None:
        if isinstance(v, list) and not v:
            raise ValueError("must name a program: an empty list runs nothing")
        if v is not None and any("\x00" in a for a in ([v] if isinstance(v, str) else v)):
            raise ValueError("must not contain NUL characters")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _ENV_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a valid variable name: use letters, digits and _, "
                    "not starting with a digit"
                )
            if name.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(
                    f"{name!r} is reserved (names starting with "
                    f"{' or '.join(RESERVED_ENV_PREFIXES)} are set by the backend): rename it"
                )
            if "\x00" in value:
                raise ValueError(f"the value of {name} must not contain NUL characters")
        return v

    @field_validator("labels")
    @classmethod
    def _labels_canonical(cls, v: list[str]) -> list[str]:
        for label in v:
            if not (1 <= len(label) <= 64 and _LABEL.match(label)):
                raise ValueError(
                    f"{label!r} is not a valid label: 1-64 characters, letters, digits and "
                    "._:=/+- only, starting with a letter or digit"
                )
        # Labels are a set: sorting them here keeps the encoding canonical.
        return sorted(set(v))

    @field_validator("workdir")
    @classmethod
    def _workdir_clean(cls, v: str | None) -> str | None:
        if v is not None and ("\x00" in v or _CONTROL.search(v)):
            raise ValueError("must not contain control characters")
        return v

    @field_validator("inputs")
    @classmethod
    def _inputs_distinct(cls, v: list[Input] | None) -> list[Input] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("an empty list: leave `inputs` out instead")
        if len(v) > MAX_INPUTS:
            raise ValueError(f"{len(v)} inputs, more than the limit of {MAX_INPUTS}")
        paths = [i.path for i in v]
        clash = sorted(
            {p for p in paths if paths.count(p) > 1 or any(q.startswith(p + "/") for q in paths)}
        )
        if clash:
            raise ValueError(f"two inputs would be placed at (or under) {', '.join(clash)}")
        return v

    @model_validator(mode="after")
    def _one_payload(self) -> JobSpec:
        if (self.command is None) == (self.script is None):
            raise ValueError(
                "give exactly one of `command` (a list of arguments, or one shell command line) "
                "or `script` (a shell script body)"
            )
        bad = _first_unencodable(self.model_dump())
        if bad is not None:
            raise ValueError(
                f"{bad}: holds a lone surrogate (a half of a UTF-16 pair, like \\ud800), which "
                "is not text any file or command line can carry; fix the string"
            )
        if self.version < 2 and (self.container is not None or self.inputs is not None):
            raise ValueError(
                "`container` and `inputs` are fields of spec version 2: add `version: 2`"
            )
        return self

    @property
    def cpus(self) -> int:
        """CPUs the job holds: tasks x CPUs per task."""
        return self.resources.tasks * self.resources.cpus_per_task

    @property
    def mem_mb(self) -> int:
        """Memory the job holds, in MB: CPUs x memory per CPU."""
        return self.cpus * self.resources.mem_per_cpu_mb

    @property
    def gpus(self) -> int:
        return self.resources.gpus

    @property
    def required_labels(self) -> list[str]:
        """The labels a provider needs to run this job: the spec's, and ``container`` for a
        job in a container (placement and the agent's admission both use this)."""
        extra = [CONTAINER_LABEL] if self.container is not None else []
        return sorted({*self.labels, *extra})


def _first_unencodable(value: Any, where: str = "") -> str | None:
    """The place of the first string that is not valid Unicode text (JSON's ``"\\ud800"``
    decodes to such a string), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "(top level)"
        return None
    if isinstance(value, dict):
        items = [(f"{where}.{k}" if where else str(k), k, v) for k, v in value.items()]
        for place, key, item in items:
            found = _first_unencodable(key, place) or _first_unencodable(item, place)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_unencodable(item, f"{where}[{i}]")
            if found:
                return found
    return None


# ---------------------------------------------------------------------------------------------
# Errors a human can act on


def _where(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(f".{p}" if parts else str(p))
    return "".join(parts) or "(top level)"


def _human(err: Any) -> str:
    # Pydantic reports the union branch in the location ("command.list[...]"); a user wrote
    # `command`, so keep only the field names and indexes they can see in their file.
    loc = tuple(err["loc"])
    kind = err["type"]
    got = err.get("input")
    if loc[:1] == ("command",) and kind in ("string_type", "list_type"):
        return (
            "command: must be a list of arguments (strings) or one command line (a string); "
            "put numbers in quotes"
        )
    where = _where(loc)
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1])
        return (
            f"{where}: unknown field; allowed here: {', '.join(allowed)}. "
            f"Check the spelling (see {DOCS})"
        )
    if kind == "missing":
        return f"{where}: required field is missing; add it (see {DOCS})"
    if kind == "string_type":
        return f"{where}: must be a string, got {got!r}; put the value in quotes"
    if kind in ("int_type", "int_parsing"):
        return f"{where}: must be a whole number, got {got!r}"
    msg = err["msg"].removeprefix("Value error, ")
    if loc:
        return f"{where}: {msg} (got {got!r})" if kind != "value_error" else f"{where}: {msg}"
    return msg


def _allowed_fields(loc: tuple[int | str, ...]) -> list[str]:
    sections: dict[int | str, type[BaseModel]] = {
        "resources": Resources,
        "container": Container,
        "inputs": Input,
    }
    model = sections.get(loc[0], JobSpec) if loc else JobSpec
    return sorted(model.model_fields)


def _errors(exc: ValidationError) -> list[str]:
    seen: list[str] = []
    for err in exc.errors():
        text = _human(err)
        if text not in seen:
            seen.append(text)
    return seen


# ---------------------------------------------------------------------------------------------
# Reading and writing


def validate_spec(data: object, source: str | None = None) -> JobSpec:
    """A ``JobSpec`` from already-parsed data (a dict), or ``SpecError``."""
    if _object_depth(data) > MAX_SPEC_DEPTH:
        raise SpecError([_too_deep(f"more than {MAX_SPEC_DEPTH} levels")], source)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise SpecError(
            [f"the spec must be a mapping of fields (name, resources, command...), got {kind}"],
            source,
        )
    spec = _model(data, source)
    size = len(encode_spec(spec))
    if size > MAX_SPEC_BYTES:
        raise SpecError(
            [
                f"encoded spec is {size} bytes, more than the limit of {MAX_SPEC_BYTES}; "
                "move large scripts or data to a file the job downloads, and put its URI and "
                "hash in the spec"
            ],
            source,
        )
    return spec


def _model(data: dict[str, Any], source: str | None) -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_errors(exc), source) from None


def parse_spec(text: str, source: str | None = None) -> JobSpec:
    """Parse YAML (JSON is YAML too) text into a ``JobSpec``; ``source`` names it in errors."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise SpecError([f"file is larger than {MAX_SOURCE_BYTES} bytes; a spec is small"], source)
    try:
        data = yaml.load(text, Loader=_ShallowLoader)  # a SafeLoader, bounded in depth
    except _TooDeep as exc:
        raise SpecError([str(exc)], source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"not valid YAML{at}: {problem}"], source) from None
    return validate_spec(data, source)


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate a spec file (YAML or JSON)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SpecError([f"cannot read the file: {exc.strerror or exc}"], str(p)) from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise SpecError([f"file is larger than {MAX_SOURCE_BYTES} bytes; a spec is small"], str(p))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([f"not UTF-8 text (byte {exc.start}); save it as UTF-8"], str(p)) from None
    return parse_spec(text, str(p))


# ---------------------------------------------------------------------------------------------
# Nesting, bounded before any recursive reader sees it


def _too_deep(found: str) -> str:
    return (
        f"nested {found}, deeper than the limit of {MAX_SPEC_DEPTH}; a spec nests at most 3 "
        f"levels (like inputs[0].url): remove the extra lists and mappings (see {DOCS})"
    )


class _TooDeep(yaml.YAMLError):
    pass


class _ShallowLoader(yaml.SafeLoader):
    """YAML's safe loader with a bound on nesting: its composer recurses once per level."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_SPEC_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooDeep(
                    _too_deep(
                        f"more than {MAX_SPEC_DEPTH} levels at line {mark.line + 1}, "
                        f"column {mark.column + 1}"
                    )
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _json_too_deep_at(data: bytes) -> int | None:
    """The offset of the first ``[`` or ``{`` opening a level deeper than ``MAX_SPEC_DEPTH`` in
    JSON bytes (outside strings), or None: one pass, no recursion."""
    depth = 0
    in_string = escaped = False
    for i, byte in enumerate(data):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                return i
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return None


def _object_depth(value: object) -> int:
    """How deep lists and mappings nest in already-parsed data, without recursion (and without
    walking more than one level past the limit)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list | tuple):
            deepest = max(deepest, level)
            if level > MAX_SPEC_DEPTH:
                continue
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def encode_spec(spec: JobSpec) -> bytes:
    """Canonical bytes of a spec: sorted keys, no spaces, UTF-8, defaults filled in, no nulls."""
    data = spec.model_dump(mode="json", exclude_none=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_spec(
    data: bytes, *, require_canonical: bool = False, source: str | None = None
) -> JobSpec:
    """The spec in bytes read from a chain event, or ``SpecError`` for anything else.

    With ``require_canonical`` the bytes must be exactly what ``encode_spec`` produces, so that a
    spec submitted around the CLI (say, with extra spaces) can be refused.
    """
    src = source or "spec bytes"
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError([f"{len(data)} bytes, more than the limit of {MAX_SPEC_BYTES}"], src)
    deep_at = _json_too_deep_at(data)
    if deep_at is not None:
        raise SpecError([_too_deep(f"more than {MAX_SPEC_DEPTH} levels at byte {deep_at}")], src)
    try:
        text = data.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        raise SpecError([f"not UTF-8 (byte {exc.start})"], src) from None
    except ValueError as exc:
        raise SpecError([f"not canonical JSON: {exc}"], src) from None
    # Bytes read back are within MAX_SPEC_BYTES already: only the model is checked (the
    # canonical re-encoding that `validate_spec` measures is needed only to compare).
    if not isinstance(obj, dict):
        return validate_spec(obj, src)  # raises, saying what it got instead
    spec = _model(obj, src)
    if require_canonical and encode_spec(spec) != data:
        raise SpecError(
            ["valid, but not in canonical form; encode it with metascheduler's encode_spec"], src
        )
    return spec
