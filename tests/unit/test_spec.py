"""The job spec: validation with human errors, canonical encoding, decoding chain bytes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from metascheduler.spec import (
    MAX_SPEC_BYTES,
    MAX_SPEC_DEPTH,
    JobSpec,
    SpecError,
    decode_spec,
    encode_spec,
    load_spec,
    parse_spec,
    validate_spec,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "specs"


def errors_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "job.yaml")
    assert info.value.source == "job.yaml"
    return info.value.messages


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_spec("name: x\ncommand: [echo, hi]\n")
    assert spec.resources.tasks == 1
    assert spec.resources.cpus_per_task == 1
    assert spec.resources.mem_per_cpu_mb == 1024
    assert spec.gpus == 0
    assert spec.env == {} and spec.labels == []
    assert spec.time_limit_minutes is None and spec.workdir is None


def test_derived_resources() -> None:
    spec = parse_spec(
        "name: x\nscript: 'true'\n"
        "resources: {tasks: 3, cpus_per_task: 2, mem_per_cpu_mb: 500, gpus: 1}\n"
    )
    assert (spec.cpus, spec.mem_mb, spec.gpus) == (6, 3000, 1)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    spec = load_spec(path)
    assert decode_spec(encode_spec(spec), require_canonical=True) == spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("command: [a]", "name: required field is missing"),
        ("name: x", "give exactly one of `command`"),
        ("name: x\ncommand: a\nscript: b", "give exactly one of `command`"),
        ("name: x\ncommand: []", "command: must name a program"),
        ("name: x\ncommand: [1]", "command: must be a list of arguments"),
        ("name: x\ncommand: a\ncolour: red", "colour: unknown field; allowed here:"),
        ("name: x\ncommand: a\nresources: {cpus: 2}", "resources.cpus: unknown field"),
        ("name: x\ncommand: a\nresources: {tasks: 0}", "resources.tasks: Input should be greater"),
        ("name: x\ncommand: a\nresources: {cpus_per_task: '4'}", "must be a whole number"),
        ("name: x\ncommand: a\nresources: {gpus: -1}", "resources.gpus"),
        ("name: x\ncommand: a\nenv: {DEBUG: yes}", "env.DEBUG: must be a string, got True; put"),
        ("name: x\ncommand: a\nenv: {1X: a}", "'1X' is not a valid variable name"),
        ("name: x\ncommand: a\nenv: {SLURM_X: a}", "'SLURM_X' is reserved"),
        ("name: x\ncommand: a\nlabels: ['bad label']", "'bad label' is not a valid label"),
        ("name: x\ncommand: a\ntime_limit_minutes: 0", "time_limit_minutes"),
        ("name: ''\ncommand: a", "name: String should have at least 1 character"),
        ('name: "a\\tb"\ncommand: a', "must not contain control characters"),
        ("- a\n- b", "must be a mapping of fields"),
        ("", "got empty"),
        ("name: [", "not valid YAML at line 1"),
    ],
)
def test_errors_name_the_field_and_what_to_do(text: str, expected: str) -> None:
    messages = errors_of(text)
    assert any(expected in m for m in messages), messages


def test_all_problems_are_reported_at_once() -> None:
    messages = errors_of("name: x\ncommand: a\nresources: {tasks: 0, cpus_per_task: 0}\nfoo: 1")
    assert len(messages) == 3
    text = str(SpecError(messages, "job.yaml"))
    assert text.startswith("invalid job spec:") and text.count("job.yaml: ") == 3


def test_load_spec_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: give exactly one"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read the file"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\ncommand: a\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(tmp_path / "latin1.yaml")


def test_json_specs_load_too(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"name": "j", "command": "echo hi"}))
    assert load_spec(path).command == "echo hi"


def test_encoding_is_canonical() -> None:
    a = parse_spec("name: x\ncommand: [echo, é]\nlabels: [b, a, b]\nenv: {B: '2', A: '1'}\n")
    b = parse_spec(
        "env: {A: '1', B: '2'}\nlabels: [a, b]\ncommand: [echo, é]\nname: x\n"
        "resources: {tasks: 1, gpus: 0}\nversion: 1\n"
    )
    assert encode_spec(a) == encode_spec(b)
    assert encode_spec(a) == (
        b'{"command":["echo","\xc3\xa9"],"env":{"A":"1","B":"2"},"labels":["a","b"],'
        b'"name":"x","resources":{"cpus_per_task":1,"gpus":0,"mem_per_cpu_mb":1024,"tasks":1},'
        b'"version":1}'
    )


def test_decode_round_trips_and_rejects_garbage() -> None:
    spec = parse_spec("name: x\nscript: |\n  echo hi\n  exit 3\n")
    assert decode_spec(encode_spec(spec)) == spec
    for junk in [b"", b"\xff\xfe", b"[1,2]", b"{", b"NaN", b'{"name":"x","name":"y"}']:
        with pytest.raises(SpecError):
            decode_spec(junk)
    with pytest.raises(SpecError, match="unknown field"):
        decode_spec(b'{"name":"x","command":"a","extra":1}')


def test_decode_can_require_canonical_bytes() -> None:
    loose = b'{"name": "x", "command": "a"}'
    assert decode_spec(loose).name == "x"
    with pytest.raises(SpecError, match="not in canonical form"):
        decode_spec(loose, require_canonical=True)


def test_size_limit() -> None:
    big = "x" * MAX_SPEC_BYTES
    messages = errors_of(f"name: x\nscript: {big}\n")
    assert "more than the limit of 16384" in messages[0]
    with pytest.raises(SpecError, match="more than the limit"):
        decode_spec(b" " * (MAX_SPEC_BYTES + 1))


def test_spec_is_immutable() -> None:
    spec = parse_spec("name: x\ncommand: a\n")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        spec.name = "y"
    assert isinstance(spec, JobSpec)


# ---------------------------------------------------------------------------- version 2

DIGEST = "ab" * 32
V2 = (
    "version: 2\nname: c\ncommand: [cat, data/in.txt]\n"
    f"container: {{image: 'https://files.example/busybox.tar#sha256={DIGEST}'}}\n"
    f"inputs: [{{url: 'https://files.example/in.txt', sha256: '{DIGEST}', path: data/in.txt}}]\n"
)


def test_v2_container_and_inputs_round_trip_canonically() -> None:
    spec = parse_spec(V2)
    assert spec.container is not None and spec.inputs is not None
    assert spec.container.digest == DIGEST
    assert spec.container.archive_url == "https://files.example/busybox.tar"
    data = encode_spec(spec)
    assert decode_spec(data, require_canonical=True) == spec
    assert b'"inputs":[{"path":"data/in.txt","sha256":"' + DIGEST.encode() in data
    assert data.endswith(b'"version":2}')
    registry = parse_spec(
        V2.replace(
            f"https://files.example/busybox.tar#sha256={DIGEST}",
            f"registry.example:5000/tools/busybox@sha256:{DIGEST}",
        )
    )
    assert registry.container is not None and registry.container.archive_url is None


def test_v1_spec_encodes_without_v2_fields() -> None:
    data = encode_spec(parse_spec("name: x\ncommand: echo hi\n"))
    assert b"container" not in data and b"inputs" not in data and b'"version":1' in data


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("version: 2\n", ""), "add `version: 2`"),
        ((f"#sha256={DIGEST}", ""), "does not pin the image's content"),
        ((f"busybox.tar#sha256={DIGEST}", f"busybox.tar#sha256={DIGEST.upper()}"), "pin"),
        ((f"sha256: '{DIGEST}'", "sha256: 'abc'"), "64 lowercase hex digits"),
        (("path: data/in.txt", "path: ../etc/passwd"), "plain relative path"),
        (("path: data/in.txt", "path: /etc/passwd"), "plain relative path"),
        (("path: data/in.txt", "path: data/" + "\u202e" * 90), "more than the 255 any file"),
        (("url: 'https://files.example/in.txt'", "url: 'file:///etc/passwd'"), "not an http"),
        (("container: {image", "container: {img"), "allowed here: image"),
    ],
)
def test_v2_refusals_say_what_to_fix(change: tuple[str, str], words: str) -> None:
    text = V2.replace(*change)
    assert text != V2
    assert any(words in m for m in errors_of(text)), errors_of(text)


def test_v2_inputs_must_not_overlap() -> None:
    two = V2.replace(
        "inputs: [", f"inputs: [{{url: 'http://a/b', sha256: '{DIGEST}', path: data}}, "
    )
    assert any("two inputs" in m for m in errors_of(two))


def test_lone_surrogate_from_chain_bytes_is_refused_in_words() -> None:
    # JSON's \ud800 escape decodes to a string no file or command line can carry: a backend
    # writing it would fail far from the spec.
    data = b'{"command":["true"],"env":{"A":"\\ud800"},"name":"x"}'
    with pytest.raises(SpecError) as info:
        decode_spec(data)
    assert "env.A: holds a lone surrogate" in str(info.value)


@pytest.fixture
def default_recursion_limit() -> Iterator[None]:
    # Some dependency raises the limit on import; the bound must hold at Python's default.
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


DEEP = 1_200  # a 2.4 kB spec of [[[...]]]: past the recursive JSON and YAML readers' limit


@pytest.mark.usefixtures("default_recursion_limit")
def test_deep_nesting_is_refused_in_words_by_every_reader(tmp_path: Path) -> None:
    nested = "[" * DEEP + "]" * DEEP
    prefix = b'{"command":["true"],"name":"deep","note":'
    chain_bytes = prefix + nested.encode() + b"}"
    with pytest.raises(SpecError) as chain:  # the agent's and the oracle's ingestion's reader
        decode_spec(chain_bytes)
    assert f"deeper than the limit of {MAX_SPEC_DEPTH}" in str(chain.value)
    # The first [ past the limit: the mapping is level 1, the note's first [ level 2.
    assert f"at byte {len(prefix) + MAX_SPEC_DEPTH - 1}" in str(chain.value)
    with pytest.raises(SpecError, match="deeper than the limit") as flow:
        parse_spec(f"name: deep\ncommand: [true]\nnote: {nested}\n")
    assert "at line 3" in str(flow.value)
    block = "name: deep\ncommand: [true]\nnote:\n" + "".join(
        " " * (2 * k) + "-\n" for k in range(50)
    )
    with pytest.raises(SpecError, match="deeper than the limit"):
        parse_spec(block)
    path = tmp_path / "deep.json"
    path.write_bytes(chain_bytes)
    with pytest.raises(SpecError, match="deeper than the limit") as cli:  # the CLI's reader
        load_spec(path)
    assert cli.value.source == str(path)
    deep_obj: list[object] = []
    for _ in range(DEEP):
        deep_obj = [deep_obj]
    with pytest.raises(SpecError, match="deeper than the limit"):  # already-parsed data (SDK)
        validate_spec({"name": "deep", "command": ["true"], "note": deep_obj})


def test_nesting_up_to_the_limit_is_read_and_judged_on_its_fields() -> None:
    # At the limit the reader goes on, and the unknown field is what is refused; one more
    # level is refused for its depth.
    at_limit = "[" * (MAX_SPEC_DEPTH - 1) + "]" * (MAX_SPEC_DEPTH - 1)
    with pytest.raises(SpecError, match="unknown field"):
        decode_spec(f'{{"command":"a","name":"x","note":{at_limit}}}'.encode())
    with pytest.raises(SpecError, match="deeper than the limit"):
        decode_spec(f'{{"command":"a","name":"x","note":[{at_limit}]}}'.encode())
    # Brackets inside strings, escaped quotes included, are text, not nesting.
    text = json.dumps({"command": "a", "name": "x", "env": {"A": '\\"' + "[" * DEEP}})
    assert decode_spec(text.encode()).env["A"].endswith("[[[")
