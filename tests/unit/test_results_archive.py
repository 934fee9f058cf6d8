"""Output archives: byte-for-byte round trip, tampering detected, unsafe paths refused, and the
result digest over the archive and the log chain."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
import zstandard
from eth_account import Account
from eth_keys import keys

from metascheduler.results import archive
from metascheduler.results.digest import check, result_digest
from metascheduler.results.errors import ResultsError, Tampered, UnsafeArchive
from metascheduler.results.keys import new_job_key, wrap
from metascheduler.results.logchain import Deployment

CUSTOMER = Account.create()
OTHER = Account.create()
DEP = Deployment(31337, "0x" + "cd" * 20)
JOB = 11


def _pack(src: Path, dest: Path, max_bytes: int | None = None) -> archive.Packed:
    key = new_job_key()
    pub = keys.PrivateKey(CUSTOMER.key).public_key.to_bytes()
    return archive.pack(
        src,
        dest,
        deployment=DEP,
        job_id=JOB,
        job_key=key,
        wrapped_key=wrap(pub, key),
        max_bytes=max_bytes,
    )


def _at(packed: archive.Packed) -> Path:
    """Where the archive was written (these tests always give `pack` a file)."""
    assert packed.path is not None
    return packed.path


def _open(src: Path, dest: Path, private_key: bytes = CUSTOMER.key, job_id: int = JOB) -> list[str]:
    return archive.open_archive(
        src, dest, private_key=bytes(private_key), deployment=DEP, job_id=job_id
    )


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    src = tmp_path / "out"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "result.txt").write_text("MARKER-outputs-9911\n")
    (src / "sub" / "deeper" / "data.bin").write_bytes(os.urandom(archive.SEGMENT_BYTES + 12345))
    (src / "empty").mkdir()
    (src / "link").symlink_to("/etc/passwd")
    return src


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_round_trip_byte_for_byte_without_links(outputs: Path, tmp_path: Path) -> None:
    packed = _pack(outputs, tmp_path / "o.enc")
    assert packed.files == 2
    assert packed.sha256 == archive.sha256_file(_at(packed))
    assert packed.size == _at(packed).stat().st_size
    got = tmp_path / "got"
    names = _open(_at(packed), got)
    assert sorted(names) == ["result.txt", "sub/deeper/data.bin"]
    assert _files(got) == _files(outputs)
    assert (got / "empty").is_dir()
    assert not (got / "link").exists()


def test_archive_holds_no_plaintext(outputs: Path, tmp_path: Path) -> None:
    packed = _pack(outputs, tmp_path / "o.enc")
    assert b"MARKER" not in _at(packed).read_bytes()


def test_missing_output_dir_packs_an_empty_archive(tmp_path: Path) -> None:
    packed = _pack(tmp_path / "nothing", tmp_path / "o.enc")
    assert packed.files == 0
    assert _open(_at(packed), tmp_path / "got") == []


def test_size_cap_is_refused_in_words(outputs: Path, tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="over the cap"):
        _pack(outputs, tmp_path / "o.enc", max_bytes=1000)


@pytest.mark.parametrize("where", ["header", "middle", "end", "truncate", "append"])
def test_tampered_archive_is_detected(outputs: Path, tmp_path: Path, where: str) -> None:
    packed = _pack(outputs, tmp_path / "o.enc")
    data = bytearray(_at(packed).read_bytes())
    if where == "header":
        data[20] ^= 1
    elif where == "middle":
        data[len(data) // 2] ^= 1
    elif where == "end":
        data[-1] ^= 1
    elif where == "truncate":
        del data[-100:]
    else:
        data += b"extra"
    _at(packed).write_bytes(bytes(data))
    with pytest.raises(Tampered):
        _open(_at(packed), tmp_path / "got")
    assert not (tmp_path / "got").exists()


def test_another_wallet_or_job_cannot_open(outputs: Path, tmp_path: Path) -> None:
    packed = _pack(outputs, tmp_path / "o.enc")
    with pytest.raises(ResultsError, match="customer's wallet"):
        _open(_at(packed), tmp_path / "got", private_key=OTHER.key)
    with pytest.raises(Tampered, match="not job"):
        _open(_at(packed), tmp_path / "got", job_id=JOB + 1)


def _evil_tar(members: list[tarfile.TarInfo]) -> io.BytesIO:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for m in members:
            data = b"pwned" if m.isreg() else b""
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data) if data else None)
    return io.BytesIO(zstandard.ZstdCompressor().compress(raw.getvalue()))


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = link
    return m


@pytest.mark.parametrize(
    "members",
    [
        [_member("../escape.txt")],
        [_member("ok/../../escape.txt")],
        [_member("/tmp/abs-escape.txt")],
        [_member("ln", tarfile.SYMTYPE, "/etc"), _member("ln/passwd")],
        [_member("hard", tarfile.LNKTYPE, "/etc/passwd")],
        [_member("dev", tarfile.CHRTYPE)],
        [_member("fine.txt"), _member("../../late-escape.txt")],
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device", "late"],
)
def test_unsafe_members_are_refused_and_nothing_written(
    tmp_path: Path, members: list[tarfile.TarInfo]
) -> None:
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(UnsafeArchive):
        archive.unpack(_evil_tar(members), dest)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


def test_result_digest_binds_archive_and_log_head() -> None:
    a, h = bytes(32), "0x" + "22" * 32
    d = result_digest(a, h)
    check(d, a, h)
    check("0x" + d.hex(), a, h)
    with pytest.raises(Tampered, match="do not match"):
        check(d, b"\x01" * 32, h)
    with pytest.raises(Tampered):
        check(d, a, "0x" + "23" * 32)


def test_size_bound_is_never_below_the_archive(tmp_path: Path) -> None:
    """The upload's parts are planned on the bound: an archive past it could not be stored."""
    shapes = tmp_path / "shapes"
    deep = shapes / ("ü" * 60) / ("n" * 200)
    deep.mkdir(parents=True)
    for i in range(300):
        (deep / f"{'long-name-' * 12}{i}.txt").write_bytes(os.urandom(i))
    (shapes / "empty").mkdir()
    (shapes / "big.bin").write_bytes(os.urandom(2 * archive.SEGMENT_BYTES + 1))
    incompressible = tmp_path / "random"
    incompressible.mkdir()
    (incompressible / "r.bin").write_bytes(os.urandom(archive.SEGMENT_BYTES * 3))
    for src in (shapes, incompressible, tmp_path / "missing"):
        packed = _pack(src, tmp_path / "o.enc")
        assert packed.size <= archive.size_bound(src), src


def test_a_failed_part_stops_the_packing_with_the_upload_error(tmp_path: Path) -> None:
    """Parts go up while the archive is packed: the first that fails ends it, in words."""
    from metascheduler.devnet.anvil import free_port
    from metascheduler.results.http import ApiUnavailable, _PartSender

    nowhere = f"http://127.0.0.1:{free_port()}/part"
    sender = _PartSender([{"number": n, "url": nowhere} for n in (1, 2, 3)], 5 << 20)
    src = tmp_path / "out"
    src.mkdir()
    (src / "r.bin").write_bytes(os.urandom(12 << 20))
    key = new_job_key()
    pub = keys.PrivateKey(CUSTOMER.key).public_key.to_bytes()
    try:
        with pytest.raises(ApiUnavailable, match="upload to the object store failed"):
            archive.pack(
                src,
                tmp_path / "o.enc",
                deployment=DEP,
                job_id=JOB,
                job_key=key,
                wrapped_key=wrap(pub, key),
                sink=sender.feed,
            )
            sender.finish()
    finally:
        sender.close()
