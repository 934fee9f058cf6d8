"""Output files: packed (tar, zstd), encrypted in authenticated segments, and unpacked safely.

An encrypted archive is

    MAGIC || u32 header length || header JSON || segment*

where each segment is `u32 length || AES-GCM ciphertext` of up to SEGMENT_BYTES of the
compressed tar, under the job key, with nonce `nonce_prefix || u32 index` and associated data
`keccak256(header) || u32 index || final flag`. The header names the deployment and the job and
carries the ECIES-wrapped job key. Reordered, dropped or truncated segments fail to
authenticate; the last segment is flagged final, so a cut-off archive is detected too.

Packing streams (tar into zstd into the encryptor into the file, and to a `sink` when given:
the uploader sends parts while the packing goes on), one pass over the outputs. `size_bound`
gives, before packing, a size the archive cannot exceed (the upload's parts are planned on it).
Unpacking decrypts to a temporary tar first, then checks every member before writing any: only
regular files and folders, every path inside the destination.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_utils import keccak

from .errors import ResultsError, Tampered, UnsafeArchive
from .keys import unwrap
from .logchain import Deployment

MAGIC = b"MSOUT1\n"
SEGMENT_BYTES = 4 << 20
_U32 = struct.Struct(">I")
_TAG_BYTES = 16
#: zstd at this level keeps up with a loopback upload; one thread, because the upload's own
#: threads need the other cores (zstd's worker threads made packing slower on two cores).
ZSTD_LEVEL = 3
#: A tar member's most bytes beyond its data: a PAX header block with its records (the path
#: twice at most, times, names) and the member's header, plus the data's padding to 512.
_TAR_MEMBER_BYTES = 4 * 512


@dataclass(frozen=True)
class ArchiveHeader:
    version: int
    chain_id: int
    market: str
    job_id: int
    wrapped_key: str
    nonce_prefix: str

    def canonical(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Packed:
    """An encrypted archive on disk: its size, and the SHA-256 of its bytes (what is stored)."""

    #: None when the archive was only handed to a sink (its parts uploaded as it was packed).
    path: Path | None
    size: int
    sha256: bytes
    files: int
    plain_bytes: int


def _aad(header_hash: bytes, index: int, final: bool) -> bytes:
    return header_hash + _U32.pack(index) + (b"\x01" if final else b"\x00")


class _EncryptingWriter(io.RawIOBase):
    """A write-only file that encrypts what it is given into segments written to `out`."""

    def __init__(
        self,
        out: IO[bytes] | None,
        header: ArchiveHeader,
        job_key: bytes,
        sink: Callable[[bytes], None] | None = None,
    ) -> None:
        self._out = out
        self._sink = sink
        self._aes = AESGCM(job_key)
        self._prefix = bytes.fromhex(header.nonce_prefix)
        self._header_hash = keccak(header.canonical())
        self._parts: list[bytes] = []
        self._buffered = 0
        self._index = 0
        self.sha = hashlib.sha256()
        self.size = 0
        canonical = header.canonical()
        self._emit(MAGIC + _U32.pack(len(canonical)) + canonical)

    def writable(self) -> bool:
        return True

    def _emit(self, data: bytes) -> None:
        if self._out is not None:
            self._out.write(data)
        if self._sink is not None:
            self._sink(data)
        self.sha.update(data)
        self.size += len(data)

    def _segment(self, plain: bytes | memoryview, final: bool) -> None:
        nonce = self._prefix + _U32.pack(self._index)
        ct = self._aes.encrypt(nonce, plain, _aad(self._header_hash, self._index, final))
        self._emit(_U32.pack(len(ct)) + ct)
        self._index += 1

    def write(self, data: Any) -> int:
        # Pieces are kept as they come and joined once per segment: appending to and cutting
        # the front off one growing buffer copied every byte several times.
        self._parts.append(bytes(data))
        self._buffered += len(data)
        if self._buffered >= SEGMENT_BYTES:
            joined = b"".join(self._parts)
            cut = len(joined) - len(joined) % SEGMENT_BYTES
            view = memoryview(joined)
            for at in range(0, cut, SEGMENT_BYTES):
                self._segment(view[at : at + SEGMENT_BYTES], final=False)
            rest = joined[cut:]
            self._parts, self._buffered = ([rest] if rest else []), len(rest)
        return len(data)

    def finish(self) -> None:
        self._segment(b"".join(self._parts), final=True)
        self._parts, self._buffered = [], 0


def _members(src: Path) -> Iterator[tuple[Path, str, bool]]:
    """What is packed, in order: (path, name in the archive, is a regular file). Folders and
    regular files only: a link could point anywhere on the provider's machine."""
    if not src.is_dir():
        return
    for root, dirs, names in os.walk(src, followlinks=False):
        dirs.sort()
        base = Path(root)
        for d in dirs:
            if not (base / d).is_symlink():
                yield base / d, str((base / d).relative_to(src)), False
        for name in sorted(names):
            p = base / name
            if not p.is_symlink() and p.is_file():
                yield p, str(p.relative_to(src)), True


def output_size(src: Path) -> int:
    """Bytes of the regular files under `src` (links are not followed and not packed)."""
    return sum(p.stat().st_size for p, _, is_file in _members(Path(src)) if is_file)


def check_size(src: Path, job_id: int, max_bytes: int | None) -> int:
    """The plain size of the outputs under `src`; ResultsError when it passes `max_bytes`."""
    plain = output_size(src)
    if max_bytes is not None and plain > max_bytes:
        raise ResultsError(
            f"the outputs of job {job_id} under {src} are {plain:,} bytes, over the cap of "
            f"{max_bytes:,} bytes: write less to $MS_OUTPUT_DIR, or raise the cap"
        )
    return plain


def size_bound(src: Path) -> int:
    """Bytes the encrypted archive of `src` cannot exceed: the tar's worst case, zstd's bound on
    it (incompressible data grows by a block header per 128 KiB), and a length and a tag per
    segment."""
    tar = 2 * tarfile.RECORDSIZE
    for p, name, is_file in _members(Path(src)):
        tar += _TAR_MEMBER_BYTES + 2 * len(name.encode()) + (p.stat().st_size if is_file else 0)
    compressed = tar + (tar >> 8) + (1 << 16)
    segments = compressed // SEGMENT_BYTES + 2
    return len(MAGIC) + 4 + 4096 + compressed + segments * (4 + _TAG_BYTES)


def pack(
    src: Path,
    dest: Path | None,
    *,
    deployment: Deployment,
    job_id: int,
    job_key: bytes,
    wrapped_key: bytes,
    max_bytes: int | None = None,
    sink: Callable[[bytes], None] | None = None,
) -> Packed:
    """Packs the regular files and folders under `src` (a missing `src` packs nothing) into the
    encrypted archive `dest`, handing every byte written to `sink` too when given (with no
    `dest`, to `sink` alone: the uploader keeps no copy). Symbolic links and special files are
    left out: a link could point anywhere on the provider's machine."""
    if dest is None and sink is None:
        raise ValueError("pack needs a dest file, a sink, or both")
    src = Path(src)
    plain = check_size(src, job_id, max_bytes)
    header = ArchiveHeader(
        version=1,
        chain_id=deployment.chain_id,
        market=deployment.market,
        job_id=job_id,
        wrapped_key=wrapped_key.hex(),
        nonce_prefix=os.urandom(8).hex(),
    )
    files = 0
    tmp = None
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
    with open(tmp, "wb") if tmp is not None else contextlib.nullcontext() as out:
        enc = _EncryptingWriter(out, header, job_key, sink)
        zw = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(
            cast(IO[bytes], enc), closefd=False
        )
        with tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for p, name, is_file in _members(src):
                tar.add(p, arcname=name, recursive=False)
                files += is_file
        zw.flush(zstandard.FLUSH_FRAME)
        enc.finish()
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    if dest is not None and tmp is not None:
        os.replace(tmp, dest)
    return Packed(dest, enc.size, enc.sha.digest(), files, plain)


def sha256_file(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.digest()


def read_header(f: IO[bytes]) -> ArchiveHeader:
    if f.read(len(MAGIC)) != MAGIC:
        raise Tampered("not an encrypted output archive of this grid (bad magic bytes)")
    (length,) = _U32.unpack(_read_exact(f, 4))
    try:
        return ArchiveHeader(**json.loads(_read_exact(f, length)))
    except (TypeError, ValueError) as exc:
        raise Tampered(f"the output archive's header is unreadable: {exc}") from None


def _read_exact(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise Tampered("the output archive is cut short")
    return data


def decrypt(
    src: Path, dest: IO[bytes], *, private_key: bytes, deployment: Deployment, job_id: int
) -> None:
    """Writes the compressed tar inside the encrypted archive `src` to `dest`, authenticating
    every segment; raises Tampered at the first one that does not."""
    with open(src, "rb") as f:
        header = read_header(f)
        if (
            header.chain_id != deployment.chain_id
            or header.market.lower() != deployment.market.lower()
            or header.job_id != job_id
        ):
            raise Tampered(
                f"the output archive is for job {header.job_id} of market {header.market} on chain "
                f"{header.chain_id}, not job {job_id} of {deployment.market} on chain "
                f"{deployment.chain_id}"
            )
        aes = AESGCM(unwrap(private_key, bytes.fromhex(header.wrapped_key)))
        prefix = bytes.fromhex(header.nonce_prefix)
        header_hash = keccak(header.canonical())
        index = 0
        while True:
            raw_len = f.read(4)
            if len(raw_len) < 4:
                raise Tampered("the output archive ends without its final segment (cut short)")
            (length,) = _U32.unpack(raw_len)
            if length < _TAG_BYTES or length > SEGMENT_BYTES + _TAG_BYTES:
                raise Tampered(f"segment {index} of the output archive has a bad length")
            ct = _read_exact(f, length)
            nonce = prefix + _U32.pack(index)
            plain = None
            for final in (False, True):
                try:
                    plain = aes.decrypt(nonce, ct, _aad(header_hash, index, final))
                except InvalidTag:
                    continue
                dest.write(plain)
                break
            if plain is None:
                raise Tampered(f"segment {index} of the output archive does not authenticate")
            index += 1
            if final:
                if f.read(1):
                    raise Tampered("the output archive has bytes after its final segment")
                return


def _check_member(m: tarfile.TarInfo, dest: Path) -> None:
    name = m.name
    path = PurePosixPath(name)
    if not (m.isreg() or m.isdir()):
        kind = "link" if (m.issym() or m.islnk()) else "special file"
        raise UnsafeArchive(f"the archive holds a {kind} {name!r}: refused, nothing unpacked")
    if path.is_absolute() or ".." in path.parts or "\x00" in name or name.startswith("\\"):
        raise UnsafeArchive(
            f"the archive member {name!r} would land outside {dest}: refused, nothing unpacked"
        )
    target = (dest / path).resolve()
    if target != dest and dest not in target.parents:
        raise UnsafeArchive(
            f"the archive member {name!r} would land outside {dest}: refused, nothing unpacked"
        )


def unpack(compressed_tar: IO[bytes], dest: Path) -> list[str]:
    """Unpacks a compressed tar into `dest` after checking every member; returns the file names."""
    dest = Path(dest).resolve()
    with tempfile.TemporaryFile() as tar_file:
        dctx = zstandard.ZstdDecompressor()
        try:
            dctx.copy_stream(compressed_tar, tar_file)
        except zstandard.ZstdError as exc:
            raise Tampered(f"the outputs do not decompress: {exc}") from None
        tar_file.seek(0)
        try:
            with tarfile.open(fileobj=tar_file, mode="r:") as tar:
                members = tar.getmembers()
                for m in members:
                    _check_member(m, dest)
                dest.mkdir(parents=True, exist_ok=True)
                tar.extractall(dest, members=members, filter="data")
        except tarfile.TarError as exc:
            raise Tampered(f"the outputs are not a readable tar: {exc}") from None
    return [m.name for m in members if m.isreg()]


def open_archive(
    src: Path, dest: Path, *, private_key: bytes, deployment: Deployment, job_id: int
) -> list[str]:
    """Decrypts the encrypted archive `src` and unpacks it safely into `dest`."""
    with tempfile.TemporaryFile() as compressed:
        decrypt(src, compressed, private_key=private_key, deployment=deployment, job_id=job_id)
        compressed.seek(0)
        return unpack(compressed, dest)
