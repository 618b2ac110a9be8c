"""Storage failures a user meets: wrong credentials, a missing bucket, the server gone mid-upload.

Each must come out as one clear StorageError line that names the storage and never a secret.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from bika.errors import ConfigError, ObjectNotFound, StorageError
from bika.storage import Storage, StorageSettings, open_storage, read_bytes, write_bytes

from .servers import (
    BUCKET,
    TEST_SETTINGS,
    AwsUser,
    Server,
    azure_settings,
    free_port,
    gcs_settings,
    moto_client,
    replace,
    s3_settings,
    start_moto,
)
from .test_conformance import payload, stream_into

MiB = 1024 * 1024


def assert_one_line(error: BaseException, *, names: str, never: str = "") -> str:
    message = str(error)
    assert "\n" not in message, message
    assert names in message, message
    if never:
        assert never not in message, message
    return message


# --- wrong credentials ---


def test_s3_wrong_secret_is_a_storage_error_without_the_secret(
    moto_with_auth: tuple[Server, AwsUser],
) -> None:
    server, user = moto_with_auth
    right = open_storage(f"s3://{BUCKET}/creds", s3_settings(server.endpoint, **vars_of(user)))
    write_bytes(right, "bika.json", b"{}")  # the user's own key works

    secret = "wrong-secret-do-not-print-me"
    wrong = open_storage(
        f"s3://{BUCKET}/creds",
        s3_settings(server.endpoint, access_key_id=user.access_key_id, secret_access_key=secret),
    )
    for action in (lambda: write_bytes(wrong, "x", b"x"), lambda: list(wrong.list())):
        with pytest.raises(StorageError) as caught:
            action()
        message = assert_one_line(caught.value, names=f"s3://{BUCKET}/creds", never=secret)
        assert "SignatureDoesNotMatch" in message and "AWS_SECRET_ACCESS_KEY" in message
        assert not isinstance(caught.value, ObjectNotFound)


def test_s3_unknown_access_key_is_a_storage_error(moto_with_auth: tuple[Server, AwsUser]) -> None:
    server, _user = moto_with_auth
    storage = open_storage(
        f"s3://{BUCKET}/creds",
        s3_settings(
            server.endpoint, access_key_id="AKIANOSUCHKEY", secret_access_key="s3cr3t-value"
        ),
    )
    with pytest.raises(StorageError) as caught:
        stream_into(storage, "big", payload(MiB))
    message = assert_one_line(caught.value, names="write big", never="s3cr3t-value")
    assert "AWS_ACCESS_KEY_ID" in message


def test_azure_wrong_account_key_is_a_storage_error_without_the_key(azurite: Server) -> None:
    wrong_key = "d3Jvbmcta2V5LWRvLW5vdC1wcmludC1tZQ=="
    storage = open_storage(
        f"azure://devstoreaccount1/{BUCKET}/creds",
        azure_settings(
            azurite.endpoint,
            azure_connection_string=None,
            endpoint=f"{azurite.endpoint}/devstoreaccount1",
            azure_key=wrong_key,
        ),
    )
    for action in (lambda: write_bytes(storage, "x", b"x"), lambda: list(storage.list())):
        with pytest.raises(StorageError) as caught:
            action()
        message = assert_one_line(caught.value, names=f"/{BUCKET}/creds", never=wrong_key)
        assert "AZURE_STORAGE_CONNECTION_STRING" in message


def test_gcs_unusable_credentials_file_is_a_storage_error(fake_gcs: Server, tmp_path: Path) -> None:
    # fake-gcs-server accepts any credentials, so what is tested is bika's own handling.
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"type": "service_account", "private_key": "secret-pem"}))
    storage = open_storage(
        f"gs://{BUCKET}/creds",
        gcs_settings(fake_gcs.endpoint, gcs_credentials_file=str(key_file)),
    )
    with pytest.raises(StorageError) as caught:
        write_bytes(storage, "x", b"x")
    message = assert_one_line(caught.value, names=f"gs://{BUCKET}/creds", never="secret-pem")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message


# --- missing bucket or container ---


MISSING = "bika-no-such-bucket"


@pytest.fixture(params=["s3", "azure", "gcs"])
def storage_without_bucket(request: pytest.FixtureRequest) -> Storage:
    backend = str(request.param)
    if backend == "s3":
        server = request.getfixturevalue("moto")
        return open_storage(f"s3://{MISSING}/repo", s3_settings(server.endpoint))
    if backend == "azure":
        server = request.getfixturevalue("azurite")
        return open_storage(f"az://{MISSING}/repo", azure_settings(server.endpoint))
    server = request.getfixturevalue("fake_gcs")
    return open_storage(f"gs://{MISSING}/repo", gcs_settings(server.endpoint))


@pytest.mark.parametrize("action", ["write", "streamed write", "list"])
def test_missing_bucket_is_a_storage_error_naming_it(
    storage_without_bucket: Storage, action: str
) -> None:
    run: Callable[[], object] = {
        "write": lambda: write_bytes(storage_without_bucket, "bika.json", b"{}"),
        "streamed write": lambda: stream_into(storage_without_bucket, "big", payload(MiB)),
        "list": lambda: list(storage_without_bucket.list("backups/")),
    }[action]
    with pytest.raises(StorageError) as caught:
        run()
    assert not isinstance(caught.value, ObjectNotFound)
    message = assert_one_line(caught.value, names=MISSING)
    assert "create" in message


# --- the server goes away ---


def test_server_stopped_mid_upload_gives_a_clean_storage_error(tmp_path: Path) -> None:
    server = start_moto(tmp_path)
    try:
        moto_client(server.endpoint).create_bucket(Bucket="doomed")
        settings = s3_settings(
            server.endpoint, max_retries=1, retry_timeout=2.0, connect_timeout=1.0, timeout=5.0
        )
        storage = open_storage("s3://doomed/repo", settings)
        chunk = payload(64 * 1024)
        started = time.monotonic()
        with pytest.raises(StorageError) as caught, storage.create("big") as sink:
            for written in range(2000):  # up to 125 MiB; the server dies after 1 MiB
                if written == 16:
                    server.kill()
                sink.write(chunk)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert elapsed < 30, f"took {elapsed:.1f}s to notice the server was gone"
    assert_one_line(caught.value, names="big in s3://doomed/repo")


def test_server_stopped_before_a_read_gives_a_clean_storage_error(tmp_path: Path) -> None:
    server = start_moto(tmp_path)
    try:
        moto_client(server.endpoint).create_bucket(Bucket="doomed")
        settings = s3_settings(
            server.endpoint, max_retries=1, retry_timeout=2.0, connect_timeout=1.0
        )
        storage = open_storage("s3://doomed/repo", settings)
        write_bytes(storage, "bika.json", b"{}")
    finally:
        server.kill()
    for action in (
        lambda: read_bytes(storage, "bika.json"),
        lambda: storage.stat("bika.json"),
        lambda: list(storage.list()),
        lambda: write_bytes(storage, "other", b"x"),
    ):
        with pytest.raises(StorageError) as caught:
            action()
        message = assert_one_line(caught.value, names="s3://doomed/repo")
        assert server.endpoint in message  # the hint says where bika tried to go


# --- what an abort leaves behind ---


def test_s3_failed_streamed_put_aborts_its_multipart_upload(moto: Server) -> None:
    storage = open_storage(f"s3://{BUCKET}/abort", s3_settings(moto.endpoint))
    with pytest.raises(RuntimeError), storage.create("big") as sink:
        sink.write(payload(2 * MiB))
        raise RuntimeError("pg_dump died")
    uploads = moto_client(moto.endpoint).list_multipart_uploads(Bucket=BUCKET, Prefix="abort/")
    assert uploads.get("Uploads", []) == []
    assert storage.stat("big") is None


def test_gcs_failed_streamed_put_cancels_its_resumable_upload(fake_gcs: Server) -> None:
    storage = open_storage(f"gs://{BUCKET}/abort", gcs_settings(fake_gcs.endpoint))
    with pytest.raises(RuntimeError), storage.create("big") as sink:
        sink.write(payload(2 * MiB))
        raise RuntimeError("pg_dump died")
    assert storage.stat("big") is None
    with urllib.request.urlopen(f"{fake_gcs.endpoint}/storage/v1/b/{BUCKET}/o") as response:
        names = [item["name"] for item in json.load(response).get("items", [])]
    assert "abort/big" not in names


def vars_of(user: AwsUser) -> dict[str, str]:
    return {"access_key_id": user.access_key_id, "secret_access_key": user.secret_access_key}


@pytest.mark.parametrize(
    ("scheme", "endpoint"),
    [
        (scheme, endpoint)
        for scheme in ("s3", "az", "gs")
        for endpoint in ("http://[not a host", "127.0.0.1:9000", "ftp://host")
        # host:port is how STORAGE_EMULATOR_HOST is often written, so gs:// takes it
        if (scheme, endpoint) != ("gs", "127.0.0.1:9000")
    ],
)
def test_malformed_endpoint_is_a_config_error(scheme: str, endpoint: str) -> None:
    # Credentials are given so that nothing looks further for them (instance metadata).
    settings = replace(
        TEST_SETTINGS,
        endpoint=endpoint,
        access_key_id="key",
        secret_access_key="s3cr3t",
        azure_account="acme",
        azure_key="a2V5LXNlY3JldA==",
    )
    with pytest.raises(ConfigError) as caught:
        open_storage(f"{scheme}://{BUCKET}/repo", settings)
    assert_one_line(caught.value, names="endpoint", never="a2V5LXNlY3JldA==")


def test_settings_never_show_secrets() -> None:
    settings = StorageSettings(
        secret_access_key="aws-secret", azure_key="az-key", azure_sas="sv=sas"
    )
    text = repr(settings) + str(settings)
    for secret in ("aws-secret", "az-key", "sv=sas"):
        assert secret not in text
    assert TEST_SETTINGS.part_size < StorageSettings().part_size


@pytest.mark.parametrize("backend", ["s3", "azure", "gcs"])
def test_unreachable_endpoint_gives_a_clean_storage_error(backend: str) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings: Callable[..., StorageSettings] = {
        "s3": s3_settings,
        "azure": azure_settings,
        "gcs": gcs_settings,
    }[backend]
    scheme = {"s3": "s3", "azure": "az", "gcs": "gs"}[backend]
    storage = open_storage(
        f"{scheme}://{BUCKET}/repo", settings(f"http://{closed}", retry_timeout=1.0)
    )
    started = time.monotonic()
    for action in (
        lambda: write_bytes(storage, "bika.json", b"{}"),
        lambda: stream_into(storage, "big", payload(MiB)),
        lambda: read_bytes(storage, "bika.json"),
        lambda: list(storage.list()),
    ):
        with pytest.raises(StorageError) as caught:
            action()
        message = assert_one_line(caught.value, names=f"{scheme}://{BUCKET}/repo")
        assert "Connection refused" in message and closed in message
    assert time.monotonic() - started < 30
