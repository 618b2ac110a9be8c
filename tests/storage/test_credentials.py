"""Which endpoint, region and credentials a backend will use, from settings, the environment and
AWS profiles: resolve_s3 and resolve_azure are pure, so no server is needed to test them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bika.errors import ConfigError
from bika.storage import StorageSettings
from bika.storage.azure import DEV_ACCOUNT, DEV_ENDPOINT, DEV_KEY, resolve_azure
from bika.storage.gcs import resolve_gcs
from bika.storage.s3 import aws_profile, resolve_s3

PROFILES = {
    "keys": {"aws_access_key_id": "PROFILEKEY", "aws_secret_access_key": "psecret"},
    "sso": {"sso_session": "corp", "region": "eu-central-1"},
}


def no_profile(name: str) -> dict[str, str]:
    raise AssertionError(f"profile {name} read")


def profile(name: str) -> dict[str, str]:
    return PROFILES[name]


def test_s3_settings_beat_the_environment() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "ENVKEY",
        "AWS_SECRET_ACCESS_KEY": "esecret",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://env:9000",
    }
    from_env = resolve_s3("s3://b/p/q", StorageSettings(), env, no_profile)
    assert (from_env.bucket, from_env.prefix, from_env.region) == ("b", "p/q", "eu-west-1")
    assert from_env.config["access_key_id"] == "ENVKEY"
    assert from_env.endpoint == "http://env:9000" and from_env.allow_http
    assert from_env.secrets == ("esecret",)

    settings = StorageSettings(
        access_key_id=SecretStr("SETKEY"),
        secret_access_key=SecretStr("ssecret"),
        session_token=SecretStr("stoken"),
        region="us-west-2",
        endpoint="https://minio.example:9000",
    )
    given = resolve_s3("s3://b", settings, env, no_profile)
    assert given.config["access_key_id"] == "SETKEY"
    assert given.config["session_token"] == "stoken"
    assert given.region == "us-west-2" and not given.allow_http
    assert given.secrets == ("ssecret", "stoken")


def test_s3_defaults_to_us_east_1_and_obstores_own_chain() -> None:
    options = resolve_s3("s3://b", StorageSettings(), {}, no_profile)
    assert options.region == "us-east-1" and options.endpoint is None
    assert "access_key_id" not in options.config and options.profile is None


def test_an_aws_profile_gives_keys_or_is_left_to_botocore() -> None:
    with_keys = resolve_s3("s3://b", StorageSettings(), {"AWS_PROFILE": "keys"}, profile)
    assert with_keys.config["access_key_id"] == "PROFILEKEY" and with_keys.profile is None
    # SSO, assume-role, credential_process: botocore's session resolves them at request time
    sso = resolve_s3("s3://b", StorageSettings(profile="sso"), {}, profile)
    assert sso.profile == "sso" and sso.region == "eu-central-1"
    assert "access_key_id" not in sso.config
    # keys in the environment win over AWS_PROFILE (as with the AWS CLI)...
    env = {"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "e", "AWS_PROFILE": "keys"}
    assert resolve_s3("s3://b", StorageSettings(), env, no_profile).config["access_key_id"] == (
        "ENVKEY"
    )
    # ...but not over a profile named in the settings
    named = resolve_s3("s3://b", StorageSettings(profile="keys"), env, profile)
    assert named.config["access_key_id"] == "PROFILEKEY"


def test_s3_sse_names_and_addressing_style() -> None:
    kms = resolve_s3("s3://b", StorageSettings(sse_kms_key_id="alias/k"), {}, no_profile)
    assert kms.config["server_side_encryption"] == "aws:kms"
    assert kms.config["sse_kms_key_id"] == "alias/k"
    sse = resolve_s3("s3://b", StorageSettings(sse="SSE-S3"), {}, no_profile)
    assert sse.config["server_side_encryption"] == "AES256"
    virtual = StorageSettings(endpoint="https://s3.example", path_style=False)
    hosted = resolve_s3("s3://bkt/p", virtual, {}, no_profile)
    assert hosted.config["endpoint"] == "https://bkt.s3.example"
    assert hosted.endpoint == "https://s3.example"
    assert hosted.config["virtual_hosted_style_request"] is True


@pytest.mark.parametrize(
    ("url", "settings", "message"),
    [
        ("s3://", StorageSettings(), "name the bucket"),
        ("s3://b", StorageSettings(endpoint="minio:9000"), "is not a URL"),
        ("az://", StorageSettings(), "name the container"),
        ("azure://acct", StorageSettings(), "azure://account/container/prefix"),
        ("az://c", StorageSettings(), "which storage account"),
    ],
)
def test_urls_and_settings_that_cannot_work_are_config_errors(
    url: str, settings: StorageSettings, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        if url.startswith("s3"):
            resolve_s3(url, settings, {}, no_profile)
        else:
            resolve_azure(url, settings, {})


def test_aws_profile_reads_both_files_as_botocore_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").write_text(
        "[profile backup]\nregion = eu-west-3\naws_access_key_id = CONFIGKEY\n"
        "[profile role]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = backup\n"
    )
    (tmp_path / "credentials").write_text(
        "[backup]\naws_access_key_id = CREDKEY\naws_secret_access_key = csecret\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    found = aws_profile("backup")
    assert found["aws_access_key_id"] == "CREDKEY"  # the credentials file wins
    assert found["region"] == "eu-west-3"
    assert "aws_access_key_id" not in aws_profile("role")
    with pytest.raises(ConfigError, match=r"AWS profile 'nobody' is not in .*credentials"):
        aws_profile("nobody")


def test_azure_from_a_connection_string_settings_or_variables() -> None:
    dev = resolve_azure(
        "az://c/p",
        StorageSettings(),
        {"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"},
    )
    assert (dev.account, dev.key, dev.endpoint) == (DEV_ACCOUNT, DEV_KEY, DEV_ENDPOINT)
    assert dev.allow_http and dev.config["account_key"] == DEV_KEY
    assert (dev.container, dev.prefix) == ("c", "p")

    env = {"AZURE_STORAGE_ACCOUNT": "envacct", "AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=x"}
    sas = resolve_azure("az://c", StorageSettings(), env)
    assert sas.account == "envacct" and sas.config["sas_key"] == "sv=1&sig=x"
    assert sas.key is None and sas.secrets == ("sv=1&sig=x",)
    # the account in the URL wins, and a connection string for another account is not used
    other = resolve_azure(
        "azure://mine/c",
        StorageSettings(azure_key=SecretStr("bWluZQ==")),
        {"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"},
    )
    assert other.account == "mine" and other.key == "bWluZQ==" and other.endpoint is None


def test_gcs_emulators_are_reached_anonymously() -> None:
    emulator = resolve_gcs(
        "gs://b/p", StorageSettings(), {"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}
    )
    assert emulator.endpoint == "http://127.0.0.1:4443" and emulator.anonymous
    assert (emulator.bucket, emulator.prefix) == ("b", "p")
    keyed = StorageSettings(endpoint="http://127.0.0.1:4443", gcs_credentials_file="/k.json")
    assert not resolve_gcs("gs://b", keyed, {}).anonymous  # a key file asks for credentials
    cloud = resolve_gcs("gs://b", StorageSettings(), {"GOOGLE_CLOUD_PROJECT": "proj"})
    assert cloud.endpoint is None and not cloud.anonymous and cloud.project == "proj"
    with pytest.raises(ConfigError, match="name the bucket"):
        resolve_gcs("gs://", StorageSettings(), {})
