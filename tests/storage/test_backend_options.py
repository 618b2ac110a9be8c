"""Per-backend options: storage classes, S3 encryption, archive tiers, URLs and credentials.

Settings a user writes in bika.toml or the environment, checked against the real servers.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from bika.errors import ConfigError, StorageError
from bika.storage import StorageSettings, open_storage, read_bytes, write_bytes
from bika.storage.azure import DEV_ACCOUNT, DEV_ENDPOINT, DEV_KEY, parse_connection_string
from bika.storage.local import LocalStorage

from .servers import (
    BUCKET,
    TEST_SETTINGS,
    AwsUser,
    Server,
    azure_access_tier,
    azure_settings,
    gcs_settings,
    moto_client,
    s3_settings,
)
from .test_conformance import payload, stream_into

MiB = 1024 * 1024


# --- storage classes ---


def test_s3_storage_class_and_server_side_encryption_apply_to_each_write(moto: Server) -> None:
    storage = open_storage(f"s3://{BUCKET}/classes", s3_settings(moto.endpoint, sse="SSE-S3"))
    with storage.create("monthly-small", storage_class="standard_ia") as sink:
        sink.write(b"x" * 100)
    stream_into(storage, "monthly-big", payload(MiB), write_size=100_000)
    with storage.create("glacier-ir", storage_class="GLACIER_IR") as sink:
        sink.write(payload(MiB))

    client = moto_client(moto.endpoint)
    small = client.head_object(Bucket=BUCKET, Key="classes/monthly-small")
    big = client.head_object(Bucket=BUCKET, Key="classes/monthly-big")
    cold = client.head_object(Bucket=BUCKET, Key="classes/glacier-ir")
    assert small["StorageClass"] == "STANDARD_IA"
    assert "StorageClass" not in big  # STANDARD
    assert cold["StorageClass"] == "GLACIER_IR"
    assert small["ServerSideEncryption"] == big["ServerSideEncryption"] == "AES256"


def test_azure_storage_class_is_the_access_tier(azurite: Server) -> None:
    storage = open_storage(f"az://{BUCKET}/tiers", azure_settings(azurite.endpoint))
    with storage.create("small", storage_class="cool") as sink:
        sink.write(b"x")
    with storage.create("big", storage_class="Cold") as sink:
        sink.write(payload(MiB))
    for key, tier in (("small", "Cool"), ("big", "Cold")):
        assert azure_access_tier(azurite.endpoint, BUCKET, f"tiers/{key}") == tier


def test_gcs_storage_class_is_set_on_the_object(fake_gcs: Server) -> None:
    # fake-gcs-server keeps the class of simple uploads only; GCS itself takes it on the
    # resumable upload's first request too.
    storage = open_storage(f"gs://{BUCKET}/classes", gcs_settings(fake_gcs.endpoint))
    with storage.create("monthly", storage_class="coldline") as sink:
        sink.write(b"x" * 100)
    url = f"{fake_gcs.endpoint}/storage/v1/b/{BUCKET}/o/classes%2Fmonthly"
    with urllib.request.urlopen(url) as response:
        assert json.load(response)["storageClass"] == "COLDLINE"


# --- archive tiers say how to get the data back ---


def test_s3_reading_an_archived_object_says_to_restore_it(moto: Server) -> None:
    storage = open_storage(f"s3://{BUCKET}/archive", s3_settings(moto.endpoint))
    with storage.create("backups/x/database.pgdump.zst.age", storage_class="GLACIER") as sink:
        sink.write(b"sealed")
    with pytest.raises(StorageError) as caught:
        read_bytes(storage, "backups/x/database.pgdump.zst.age")
    message = str(caught.value)
    assert "InvalidObjectState" in message
    assert "restore-object" in message and "archive/backups/x/database.pgdump.zst.age" in message


def test_azure_reading_an_archived_blob_says_to_rehydrate_it(azurite: Server) -> None:
    storage = open_storage(f"az://{BUCKET}/archive", azure_settings(azurite.endpoint))
    with storage.create("backups/x/database.pgdump.zst.age", storage_class="archive") as sink:
        sink.write(b"sealed")
    with pytest.raises(StorageError) as caught:
        read_bytes(storage, "backups/x/database.pgdump.zst.age")
    message = str(caught.value)
    assert "BlobArchived" in message and "rehydrate" in message
    assert "archive/backups/x/database.pgdump.zst.age" in message


# --- credentials and URLs the usual way ---


def test_s3_credentials_from_an_aws_profile(
    moto_with_auth: tuple[Server, AwsUser], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, user = moto_with_auth  # this moto checks signatures: only the user's key works
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[backup]\naws_access_key_id = {user.access_key_id}\n"
        f"aws_secret_access_key = {user.secret_access_key}\n"
    )
    config = tmp_path / "config"
    config.write_text("[profile backup]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "backup")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    storage = open_storage(
        f"s3://{BUCKET}/profile", StorageSettings(endpoint=server.endpoint, max_retries=1)
    )
    write_bytes(storage, "bika.json", b"{}", overwrite=True)
    assert read_bytes(storage, "bika.json") == b"{}"

    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(ConfigError, match="nobody"):
        open_storage(f"s3://{BUCKET}/profile", StorageSettings(endpoint=server.endpoint))


def test_s3_endpoint_and_keys_from_the_environment(
    moto: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    storage = open_storage(f"s3://{BUCKET}/env")  # one argument: everything from the environment
    write_bytes(storage, "bika.json", b"{}")
    assert [info.key for info in storage.list()] == ["bika.json"]


def test_azure_connection_string_from_the_environment(
    azurite: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint={azurite.endpoint}/{DEV_ACCOUNT};",
    )
    for url in (f"az://{BUCKET}/env", f"azure://{DEV_ACCOUNT}/{BUCKET}/env"):
        storage = open_storage(url, TEST_SETTINGS)
        write_bytes(storage, "bika.json", url.encode(), overwrite=True)
        assert read_bytes(storage, "bika.json") == url.encode()


def test_gcs_emulator_host_from_the_environment(
    fake_gcs: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.endpoint)
    storage = open_storage(f"gs://{BUCKET}/env")
    write_bytes(storage, "bika.json", b"{}", overwrite=True)
    assert read_bytes(storage, "bika.json") == b"{}"


def test_connection_strings_parse_as_azure_documents_them() -> None:
    dev = parse_connection_string("UseDevelopmentStorage=true")
    assert (dev.account, dev.key, dev.endpoint) == (DEV_ACCOUNT, DEV_KEY, DEV_ENDPOINT)

    keyed = parse_connection_string(
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=a2V5==;"
        "EndpointSuffix=core.windows.net"
    )
    assert (keyed.account, keyed.key) == ("acme", "a2V5==")
    assert keyed.endpoint == "https://acme.blob.core.windows.net"

    sas = parse_connection_string(
        "BlobEndpoint=https://acme.blob.core.windows.net/;SharedAccessSignature=sv=2022&sig=x%3D"
    )
    assert (sas.account, sas.sas, sas.key) == ("acme", "sv=2022&sig=x%3D", None)

    with pytest.raises(ConfigError):
        parse_connection_string("not a connection string")


@pytest.mark.parametrize(
    "url",
    ["s3://", "gs://", "az://", "azure://account-only", "ftp://host/path"],
)
def test_malformed_repository_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_storage(url, StorageSettings(azure_account="acme"))


def test_open_storage_with_a_path_is_local(tmp_path: Path) -> None:
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    assert isinstance(open_storage(f"file://{tmp_path}"), LocalStorage)
