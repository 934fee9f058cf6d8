"""Container images built offline, and a local HTTP server to fetch them and inputs from, for
the tests, the benchmark and the demo.

No registry can be reached from test machines: the image is a docker archive (the format
``podman load`` reads) made here from Debian's busybox-static (one static binary and a link per
applet), optionally padded to a given size.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BUSYBOX = Path("/bin/busybox")


def missing() -> str | None:
    """What this machine lacks to build and run the image, in words; None when nothing."""
    if not BUSYBOX.exists() or shutil.which("podman") is None:
        return "needs busybox-static and podman: run `bash scripts/sandbox.sh install`"
    return None


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def busybox_archive(pad_bytes: int = 0) -> bytes:
    """A docker archive of a busybox root filesystem (``sh``, ``cat``... under ``/bin``)."""
    binary = BUSYBOX.read_bytes()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for d in ("bin", "etc", "tmp", "work", "proc", "sys", "dev"):
            _add(t, d, type=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        _add(t, "bin/busybox", binary, size=len(binary), mode=0o755)
        for applet in ("sh", "cat", "echo", "id", "ls", "mkdir", "sleep", "env", "head", "wc"):
            _add(t, f"bin/{applet}", type=tarfile.SYMTYPE, linkname="busybox")
        passwd = b"root:x:0:0:root:/:/bin/sh\n"
        _add(t, "etc/passwd", passwd, size=len(passwd), mode=0o644)
        if pad_bytes:
            pad = os.urandom(pad_bytes)
            _add(t, "pad.bin", pad, size=len(pad), mode=0o644)
    layer_bytes = layer.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": None, "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        _add(t, f"{diff_id}", type=tarfile.DIRTYPE, mode=0o755)
        _add(t, f"{diff_id}/layer.tar", layer_bytes, size=len(layer_bytes), mode=0o644)
        _add(t, config_name, config, size=len(config), mode=0o644)
        _add(t, "manifest.json", manifest, size=len(manifest), mode=0o644)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileServer:
    """Serves ``files`` (path -> bytes) on 127.0.0.1; counts the GETs of each path."""

    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def file_server() -> Iterator[FileServer]:
    server = FileServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.hits[self.path] = server.hits.get(self.path, 0) + 1
            body = server.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # no access log on the console

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
