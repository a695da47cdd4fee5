"""The options of the ``corelay-io`` command for Zarr stores on S3 (``s3://bucket/prefix``)."""

import argparse

from corelay.io.describe import S3Options

__all__ = ["add_s3_options", "given_s3_flags", "s3_options"]

# The options of an object store: argparse destination -> flag.
_S3_FLAGS = {
    "endpoint_url": "--endpoint-url",
    "region": "--region",
    "anonymous": "--anonymous",
    "timeout": "--timeout",
}


def given_s3_flags(args: argparse.Namespace) -> list[str]:
    """The S3 options given on the command line."""
    return [
        flag
        for name, flag in _S3_FLAGS.items()
        if getattr(args, name) is not None and getattr(args, name) is not False
    ]


def s3_options(args: argparse.Namespace) -> S3Options:
    """The S3 options of the command line, the defaults for those not given."""
    return S3Options(
        endpoint_url=args.endpoint_url,
        region=args.region,
        anonymous=args.anonymous,
        timeout=args.timeout if args.timeout is not None else S3Options.timeout,
    )


def add_s3_options(parser: argparse.ArgumentParser) -> None:
    """Adds the S3 options to the ``inspect`` or ``validate`` command."""
    group = parser.add_argument_group(
        "S3 (for s3://bucket/prefix)",
        "Credentials come from the AWS environment variables (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN); they are never printed.",
    )
    group.add_argument(
        _S3_FLAGS["endpoint_url"],
        metavar="URL",
        help="the server of an S3-compatible store, such as MinIO or SeaweedFS "
        "(default: AWS_ENDPOINT_URL, else AWS S3)",
    )
    group.add_argument(
        _S3_FLAGS["region"], help="the bucket's region (default: AWS_REGION, else us-east-1)"
    )
    group.add_argument(
        _S3_FLAGS["anonymous"],
        action="store_true",
        help="send unsigned requests, without credentials (a public bucket)",
    )
    group.add_argument(
        _S3_FLAGS["timeout"],
        type=float,
        metavar="SECONDS",
        help=f"fail a request that takes longer, retries included (default: {S3Options.timeout:g})",
    )
