"""The object store behind the API: any S3-compatible store (SeaweedFS embedded by default).

Only the API holds the store's credentials. Agents and customers get pre-signed URLs (SigV4: the
only scheme SeaweedFS accepts for them), each for one object, one method and a few minutes: a PUT
(or the parts of a multipart upload) for the job's placed provider, a GET for its customer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from metascheduler.errors import MetaschedulerError

from .logchain import Deployment


class ObjectStoreError(MetaschedulerError):
    """The object store refused or did not answer; the message says which call and why."""

    kind = "object-store"


@dataclass(frozen=True)
class PartUrl:
    number: int
    url: str


def output_key(deployment: Deployment, job_id: int) -> str:
    return f"outputs/{deployment.chain_id}/{deployment.market.lower()}/{job_id}.enc"


class ObjectStore:
    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self._s3: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        try:
            return fn(**kw)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise ObjectStoreError(
                f"the object store at {self.endpoint} refused {what}: "
                f"{err.get('Code', '?')} {err.get('Message', '')}".strip()
            ) from None
        except BotoCoreError as exc:
            raise ObjectStoreError(
                f"the object store at {self.endpoint} did not answer {what}: {exc}"
            ) from None

    def ensure_bucket(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._call(f"creating bucket {self.bucket}", self._s3.create_bucket, Bucket=self.bucket)
        except BotoCoreError as exc:
            raise ObjectStoreError(
                f"the object store at {self.endpoint} did not answer: {exc}"
            ) from None

    def presign_put(self, key: str, ttl_s: int) -> str:
        return str(
            self._s3.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s
            )
        )

    def presign_get(self, key: str, ttl_s: int) -> str:
        return str(
            self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s
            )
        )

    def start_multipart(self, key: str) -> str:
        out = self._call(
            f"starting a multipart upload of {key}",
            self._s3.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
        )
        return str(out["UploadId"])

    def presign_parts(self, key: str, upload_id: str, count: int, ttl_s: int) -> list[PartUrl]:
        return [
            PartUrl(
                n,
                str(
                    self._s3.generate_presigned_url(
                        "upload_part",
                        Params={
                            "Bucket": self.bucket,
                            "Key": key,
                            "UploadId": upload_id,
                            "PartNumber": n,
                        },
                        ExpiresIn=ttl_s,
                    )
                ),
            )
            for n in range(1, count + 1)
        ]

    def complete_multipart(self, key: str, upload_id: str, etags: dict[int, str]) -> None:
        parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
        self._call(
            f"completing the multipart upload of {key}",
            self._s3.complete_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )

    def size(self, key: str) -> int | None:
        try:
            out = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise ObjectStoreError(f"the object store refused reading {key}: {exc}") from None
        except BotoCoreError as exc:
            raise ObjectStoreError(f"the object store did not answer: {exc}") from None
        return int(out["ContentLength"])

    def sha256(self, key: str) -> tuple[int, bytes] | None:
        """The size and SHA-256 of the object's bytes as stored (streamed, never held whole), or
        None when there is no such object."""
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise ObjectStoreError(f"the object store refused reading {key}: {exc}") from None
        except BotoCoreError as exc:
            raise ObjectStoreError(f"the object store did not answer: {exc}") from None
        h, size = hashlib.sha256(), 0
        try:
            for block in body.iter_chunks(1 << 20):
                h.update(block)
                size += len(block)
        except BotoCoreError as exc:
            raise ObjectStoreError(f"reading {key} from the object store failed: {exc}") from None
        return size, h.digest()

    def delete(self, key: str) -> None:
        self._call(f"deleting {key}", self._s3.delete_object, Bucket=self.bucket, Key=key)
