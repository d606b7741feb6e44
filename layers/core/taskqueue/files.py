"""S3 presigned URLs for uploads and result downloads (signing needs no request to AWS)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from taskqueue.aws import client as aws_client
from taskqueue.errors import InvalidRequest
from taskqueue.models import (
    OutputLink,
    UploadRequest,
    UploadTicket,
)
from taskqueue.task_types._s3 import uploads_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

UPLOAD_URL_SECONDS = 900
DOWNLOAD_URL_SECONDS = 3600


class Files:
    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = aws_client("s3")
        return self._client

    def upload_ticket(self, owner: str, request: UploadRequest) -> UploadTicket:
        """A PUT URL under the owner's own prefix, bound to the content type and size."""
        # The name was validated to a safe character set; the random folder keeps uploads of
        # the same name apart, and the owner prefix keeps users apart.
        own = uploads_prefix(owner)
        folder = f"{own}{uuid.uuid4().hex}/"
        if request.prefix is not None:
            if not request.prefix.startswith(own):
                raise InvalidRequest(
                    "prefix must be a folder of your own uploads",
                    [
                        {
                            "loc": ["body", "prefix"],
                            "msg": "not your upload folder",
                            "type": "value_error",
                        }
                    ],
                )
            folder = request.prefix
        key = f"{folder}{request.filename}"
        url = self.client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": request.content_type,
                "ContentLength": request.size,
            },
            ExpiresIn=UPLOAD_URL_SECONDS,
        )
        return UploadTicket(
            key=key,
            prefix=folder,
            url=url,
            headers={"Content-Type": request.content_type},
            expires_in=UPLOAD_URL_SECONDS,
        )

    def upload_exists(self, key: str, *, folder: bool) -> bool:
        """Whether an upload is there: the object `key`, or (`folder`) any object under it.

        One ListObjectsV2 of at most one key either way: a key, if it exists, is the first
        key listed under itself (no longer key with its prefix sorts before it). A listing
        rather than HeadObject, so that the API needs list rights on uploads/ only.
        """
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        contents = listed.get("Contents", [])
        if folder:
            return bool(contents)
        return bool(contents) and contents[0].get("Key") == key

    def download_links(self, owner: str, keys: list[str]) -> list[OutputLink]:
        own = [key for key in keys if key.startswith(f"results/{owner}/")]
        return [
            OutputLink(
                key=key,
                url=self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": key},
                    ExpiresIn=DOWNLOAD_URL_SECONDS,
                ),
            )
            for key in own
        ]
