"""The [storage] and [copy] tables of bika.toml: what reaches the storage backends, and how."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from bika import config_files
from bika.config import load_settings
from bika.errors import ConfigError
from bika.storage import open_storage, read_bytes, reveal, write_bytes

from helpers import offline_env
from storage.servers import BUCKET, Server


@pytest.fixture(autouse=True)
def in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BIKA_") or name == "XDG_CONFIG_HOME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(config_files, "SYSTEM_CONFIG", tmp_path / "etc" / "bika.toml")
    monkeypatch.chdir(tmp_path)


def test_storage_table_becomes_storage_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B2_KEY_ID", "0012345")
    monkeypatch.setenv("B2_APP_KEY", "K001-very-secret")
    (tmp_path / "bika.toml").write_text(
        'repo = "s3://backups/prod"\n'
        "[storage]\n"
        'endpoint = "https://s3.eu-central-003.backblazeb2.com"\n'
        'region = "eu-central-003"\n'
        "path_style = true\n"
        'access_key_id = "${B2_KEY_ID}"\n'
        'secret_access_key = "${B2_APP_KEY}"\n'
        'part_size = "16MiB"\n'
        "max_retries = 3\n"
        "[storage.classes]\n"
        'monthly = "GLACIER_IR"\n'
    )
    settings = load_settings()
    storage = settings.storage
    assert storage.endpoint == "https://s3.eu-central-003.backblazeb2.com"
    assert storage.region == "eu-central-003" and storage.path_style is True
    assert reveal(storage.access_key_id) == "0012345"
    assert reveal(storage.secret_access_key) == "K001-very-secret"
    assert storage.part_size == 16 * 1024 * 1024 and storage.max_retries == 3
    assert settings.storage.storage_class("monthly") == "GLACIER_IR"
    assert settings.storage.storage_class("daily") is None
    for text in (repr(settings), str(settings), repr(storage)):
        assert "K001-very-secret" not in text


def test_unset_storage_settings_leave_the_clouds_own_defaults() -> None:
    storage = load_settings().storage
    assert storage.endpoint is None and storage.region is None
    assert storage.access_key_id is None and storage.azure_connection_string is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[storage]\nendpoit = "x"\n', "unknown setting 'storage.endpoit'"),
        ('[storage.classes]\nyearly = "GLACIER"\n', "storage.classes"),
        ('[storage]\npart_size = "lots"\n', "storage.part_size"),
        ("[storage]\npart_size = 1024\n", "storage.part_size"),
        ('[copy]\nto = "/x"\nfrom = "/y"\n', "unknown setting 'copy.from'"),
    ],
)
def test_bad_storage_settings_are_config_errors(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "bika.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_copy_destination_from_flag_environment_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bika.toml").write_text(
        '[storage]\nregion = "eu-west-1"\n[copy]\nto = "s3://offsite/bika"\n'
    )
    settings = load_settings()
    assert settings.require_copy_to() == "s3://offsite/bika"
    # without a [copy.storage] table the destination is reached like the repository
    assert settings.copy_storage.region == "eu-west-1"
    monkeypatch.setenv("BIKA_COPY_TO", "gs://from-env/bika")
    assert load_settings().require_copy_to() == "gs://from-env/bika"
    assert load_settings(None, **{"copy.to": "/from/flag"}).require_copy_to() == "/from/flag"

    (tmp_path / "bika.toml").write_text(
        '[storage]\nregion = "eu-west-1"\n[copy.storage]\nendpoint = "https://r2.example"\n'
    )
    monkeypatch.delenv("BIKA_COPY_TO")
    settings = load_settings()
    assert settings.copy_storage.endpoint == "https://r2.example"
    assert settings.copy_storage.region is None  # its own table, not a merge
    with pytest.raises(ConfigError, match="--to"):
        settings.require_copy_to()


def test_storage_variables_alone_reach_the_storage(moto: Server) -> None:
    # no bika.toml and no AWS_* variables: the BIKA_STORAGE__* variables say everything
    environ = {
        **offline_env({}),
        "BIKA_REPO": f"s3://{BUCKET}/from-variables-{uuid.uuid4().hex[:8]}",
        "BIKA_STORAGE__ENDPOINT": moto.endpoint,
        "BIKA_STORAGE__REGION": "us-east-1",
        "BIKA_STORAGE__ACCESS_KEY_ID": "test",
        "BIKA_STORAGE__SECRET_ACCESS_KEY": "test",
        "BIKA_STORAGE__MAX_RETRIES": "1",
    }
    settings = load_settings(environ=environ)
    assert settings.storage.max_retries == 1
    storage = open_storage(settings.require_repo(), settings.storage)
    write_bytes(storage, "probe", b"reached")
    assert read_bytes(storage, "probe") == b"reached"
