"""Settings precedence: flags over environment over bika.toml, with ${ENV} interpolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from bika.config import load_settings
from bika.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "BIKA_REPO",
        "BIKA_DATABASE_URL",
        "DATABASE_URL",
        "BIKA_IDENTITY",
        "BIKA_RECIPIENTS",
        "BIKA_PG_BIN_DIR",
        "BIKA_COMPRESSION_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_flags_beat_environment_beat_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bika.toml").write_text(
        'repo = "/from/file"\nidentity = "/file/key"\ncompression_level = 5\n'
    )
    assert load_settings().repo == "/from/file"
    monkeypatch.setenv("BIKA_REPO", "/from/env")
    assert load_settings().repo == "/from/env"
    settings = load_settings(repo="/from/flag")
    assert settings.repo == "/from/flag"
    assert settings.identity == Path("/file/key")
    assert settings.compression_level == 5


def test_database_url_from_either_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://a@h/db1")
    assert load_settings().require_database_url() == "postgresql://a@h/db1"
    monkeypatch.setenv("BIKA_DATABASE_URL", "postgresql://a@h/db2")
    assert load_settings().require_database_url() == "postgresql://a@h/db2"


def test_environment_interpolation_in_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bika.toml").write_text('database_url = "${MY_DB}"\n')
    with pytest.raises(ConfigError, match="MY_DB"):
        load_settings()
    monkeypatch.setenv("MY_DB", "postgresql://u:pw@h/db")
    settings = load_settings()
    assert settings.require_database_url() == "postgresql://u:pw@h/db"
    assert "pw" not in repr(settings)  # a secret in the model never prints


def test_recipients_split_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIKA_RECIPIENTS", "age1aaa, age1bbb")
    assert load_settings().recipients == ["age1aaa", "age1bbb"]


def test_bad_values_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bika.toml").write_text("compression_level = 99\n")
    with pytest.raises(ConfigError, match="compression_level"):
        load_settings()
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    (tmp_path / "bika.toml").write_text("")
    with pytest.raises(ConfigError, match="--repo"):
        load_settings().require_repo()
