"""Zarr stores on S3, named by ``s3://bucket/prefix`` and opened read-only to describe them.

Every request has a deadline (a server that accepts a connection and never answers must not
hang ``corelay-io inspect``), and obstore's errors, which span many lines of debugging output,
become one-line :class:`OSError` messages.
"""

import os
import re
from datetime import timedelta
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store
from zarr.storage import ObjectStore

from corelay.io._description import Description, NotAStorageFileError, Progress
from corelay.io._zarr.describe import describe_zarr
from corelay.io._zarr.layout import get_doc, run

if TYPE_CHECKING:
    from obstore.store import S3Config

    from corelay.io.describe import S3Options

__all__ = ["describe_s3"]

# How often a failed request is tried again (within the timeout): a busy server's 503 passes.
_RETRIES = 3
_LIST_CHUNK = 1000
# Paths of the EC2 instance metadata service, where credentials are looked up last (at
# 169.254.169.254, or AWS_METADATA_ENDPOINT).
_IMDS = re.compile(r"/latest/(api/token|meta-data/)")
_S3_ERROR = re.compile(r"<Code>([^<]*)</Code>\s*<Message>([^<]*)</Message>")


def describe_s3(
    url: str,
    bucket: str,
    prefix: str,
    key: str | None,
    progress: Progress,
    options: "S3Options",
) -> tuple[list[Description], int]:
    """Describes the Zarr store at ``prefix`` in ``bucket`` (or only its ``key``).

    Returns:
        The descriptions, and the bytes of all objects under the prefix.

    Raises:
        FileNotFoundError: There is no bucket ``bucket``, or no object under the prefix.
        NotAStorageFileError: There are objects under the prefix, but no Zarr v3 root group.
        OSError: The endpoint cannot be reached or does not answer within the timeout, access is
            denied, or another request fails.
        NoDataSource: The store has no node at ``key``.
    """
    endpoint = options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    s3 = _s3_store(bucket, prefix, endpoint, options)
    store = ObjectStore(s3, read_only=True)
    try:
        if run(get_doc(store, "")) is None:
            # An absent root document, also when the bucket is absent: listing tells which.
            found = obstore.list_with_delimiter(s3)
            if found["objects"] or found["common_prefixes"]:
                raise NotAStorageFileError(
                    f"{url} holds objects but no zarr.json: not a Zarr v3 store"
                )
            raise FileNotFoundError(f"no Zarr v3 store at {url}: no object under the prefix")
        entries = describe_zarr(store, key, progress, where=url)
        size = sum(
            meta["size"] for batch in obstore.list(s3, chunk_size=_LIST_CHUNK) for meta in batch
        )
    except BaseError as error:
        raise _error(error, url, bucket, endpoint, options.timeout) from None
    return entries, size


def _s3_store(bucket: str, prefix: str, endpoint: str | None, options: "S3Options") -> S3Store:
    deadline = timedelta(seconds=options.timeout)
    # Anything not given here (credentials, region, endpoint) obstore takes from the AWS_*
    # environment variables.
    config: S3Config = {}
    if endpoint is not None:
        config["endpoint"] = endpoint
    if options.region is not None:
        config["region"] = options.region
    if options.anonymous:
        config["skip_signature"] = True
    store = S3Store(
        bucket,
        prefix=prefix or None,
        config=config,
        client_options={
            "timeout": deadline,
            "connect_timeout": deadline,
            "allow_http": endpoint is not None and endpoint.startswith("http://"),
        },
        retry_config={"max_retries": _RETRIES, "retry_timeout": deadline},
    )
    return store


def _error(
    error: BaseError, url: str, bucket: str, endpoint: str | None, timeout: float
) -> OSError:
    """The one-line error for a failed request."""
    text = str(error)
    server = endpoint or "AWS S3"
    answer = _S3_ERROR.search(text)
    code = answer.group(1) if answer else ""
    if code == "NoSuchBucket":
        return FileNotFoundError(f"no bucket {bucket!r} at {server}")
    if _IMDS.search(text):
        # No credentials in the environment: obstore asked the EC2 instance metadata service.
        return PermissionError(
            f"no AWS credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or pass --anonymous for a public bucket"
        )
    if isinstance(error, PermissionDeniedError | UnauthenticatedError) or code in (
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ):
        detail = f" ({code}: {answer.group(2)})" if answer else ""
        return PermissionError(
            f"access to {url} denied{detail}: set the AWS_* credential environment variables, "
            "or pass --anonymous for a public bucket"
        )
    if "kind: Timeout" in text:
        return TimeoutError(f"{server} did not answer {url} within {timeout:g} s (see --timeout)")
    if "kind: Connect" in text or "error sending request" in text:
        return ConnectionError(f"cannot connect to {server} for {url}")
    if answer:
        return OSError(f"{url}: {code}: {answer.group(2)}")
    return OSError(f"{url}: {text.splitlines()[0] if text else type(error).__name__}")
