"""Settings: which bika.toml is read, flags over environment over the file, ${ENV} interpolation
that fails only the command reading the setting, and `config show`'s rows (never a secret)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bika import config_files
from bika.config import load_settings
from bika.errors import ConfigError

from helpers import KeyedRepo, assert_clean_error, run_bika


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BIKA_") or name in ("DATABASE_URL", "XDG_CONFIG_HOME"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # /etc is not ours to write: the system-wide file is looked for in the test's folder
    monkeypatch.setattr(config_files, "SYSTEM_CONFIG", tmp_path / "etc" / "bika.toml")
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
        load_settings().require_database_url()
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


def test_the_first_settings_file_found_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def write(path: Path, repo: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'repo = "{repo}"\n')
        return path

    assert load_settings().repo is None and load_settings().config_file is None
    system = write(tmp_path / "etc" / "bika.toml", "/system")
    assert load_settings().repo == "/system" and load_settings().config_file == system
    write(tmp_path / "home" / ".config" / "bika" / "bika.toml", "/user")
    assert load_settings().repo == "/user"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_settings().repo == "/system"  # XDG_CONFIG_HOME replaces ~/.config
    write(tmp_path / "xdg" / "bika" / "bika.toml", "/xdg")
    assert load_settings().repo == "/xdg"
    write(tmp_path / "bika.toml", "/here")
    assert load_settings().repo == "/here"
    monkeypatch.setenv("BIKA_CONFIG", str(write(tmp_path / "named.toml", "/named")))
    assert load_settings().repo == "/named"
    assert load_settings(write(tmp_path / "flag.toml", "/flag")).repo == "/flag"
    monkeypatch.setenv("BIKA_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"BIKA_CONFIG names .*nope\.toml, which does not exist"):
        load_settings()


def test_every_setting_is_also_a_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bika.toml").write_text(
        '[storage]\nregion = "from-file"\nendpoint = "https://file.example"\n'
    )
    monkeypatch.setenv("BIKA_COMPRESSION_THREADS", "2")
    monkeypatch.setenv("BIKA_STORAGE__REGION", "eu-central-003")
    monkeypatch.setenv("BIKA_STORAGE__PATH_STYLE", "true")
    monkeypatch.setenv("BIKA_STORAGE__PART_SIZE", "16MiB")
    monkeypatch.setenv("BIKA_STORAGE__SECRET_ACCESS_KEY", "K001-secret")
    monkeypatch.setenv("BIKA_STORAGE__CLASSES", '{"monthly": "GLACIER_IR"}')
    monkeypatch.setenv("BIKA_COPY__STORAGE__ENDPOINT", "https://r2.example")
    settings = load_settings()
    assert settings.compression_threads == 2
    assert settings.storage.region == "eu-central-003"  # the variable beats the file
    assert settings.storage.endpoint == "https://file.example"  # the rest of the table stays
    assert settings.storage.path_style is True
    assert settings.storage.part_size == 16 * 1024 * 1024
    assert settings.storage.secret_access_key is not None
    assert settings.storage.secret_access_key.get_secret_value() == "K001-secret"
    assert settings.storage.storage_class("monthly") == "GLACIER_IR"
    assert settings.copy_storage.endpoint == "https://r2.example"
    assert load_settings(**{"storage.region": "flag"}).storage.region == "flag"


def test_older_variable_names_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIKA_COPY_TO", "/older")
    assert load_settings().require_copy_to() == "/older"
    monkeypatch.setenv("BIKA_COPY__TO", "/newer")
    assert load_settings().require_copy_to() == "/newer"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BIKA_COMPRESSION_LEVEL", "99", "'compression_level' (from BIKA_COMPRESSION_LEVEL)"),
        ("BIKA_STORAGE__PART_SIZE", "lots", "setting 'storage.part_size' (from BIKA_STORAGE__"),
        ("BIKA_STORAGE__CLASSES", "monthly", "BIKA_STORAGE__CLASSES is not JSON"),
        (
            "BIKA_STORAGE__CLASSES",
            '{"yearly": "X"}',
            "'storage.classes' (from BIKA_STORAGE__CLASSES): 'yearly' is not a backup kind",
        ),
    ],
)
def test_a_bad_variable_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_unset_variable_fails_only_what_reads_its_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "bika.toml").write_text(
        'repo = "/r"\ndatabase_url = "postgresql://u:${NOPE_PW}@h/db"\n'
        '[storage]\nregion = "eu"\nsecret_access_key = "${NOPE_KEY}"\n'
        '[copy.storage]\nazure_key = "${NOPE_AZ}"\n'
    )
    settings = load_settings()  # `bika list` reads none of them
    assert settings.repo == "/r" and settings.storage.region == "eu"
    assert settings.compression_level == 3
    with pytest.raises(ConfigError) as caught:
        settings.require_database_url()
    assert str(caught.value) == (
        "setting 'database_url' in bika.toml refers to ${NOPE_PW}, which is not set in the"
        " environment; set NOPE_PW or change the setting"
    )
    with pytest.raises(ConfigError, match=r"'storage.secret_access_key' .* \$\{NOPE_KEY\}"):
        _ = settings.storage.secret_access_key
    # [copy.storage] still exists (the copy does not fall back to [storage]), and fails on use
    assert settings.copy_storage.region is None
    with pytest.raises(ConfigError, match="NOPE_AZ"):
        _ = settings.copy_storage.azure_key
    # a variable or flag for the setting replaces the file's value, ${…} and all
    monkeypatch.setenv("BIKA_DATABASE_URL", "postgresql://u@h/db")
    assert load_settings().require_database_url() == "postgresql://u@h/db"
    assert (
        load_settings(database_url="postgresql://f@h/db")
        .require_database_url()
        .startswith("postgresql://f@")
    )


def test_explain_shows_where_each_setting_came_from_and_never_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "bika.toml").write_text(
        'repo = "s3://b/prod"\n[storage]\nregion = "eu"\naccess_key_id = "AKIAFILE"\n'
        'azure_connection_string = "${NOPE}"\n[storage.classes]\nmonthly = "GLACIER_IR"\n'
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2-pw@db.example:5432/app")
    monkeypatch.setenv("BIKA_STORAGE__SECRET_ACCESS_KEY", "K001-very-secret")
    rows = {row.name: row for row in load_settings(pg_bin_dir="/usr/lib/pg/bin").explain()}
    assert (rows["repo"].value, rows["repo"].source, rows["repo"].detail) == (
        "s3://b/prod",
        "file",
        "bika.toml",
    )
    url = rows["database_url"]
    assert (url.value, url.source, url.detail) == (
        "postgresql://app:***@db.example:5432/app",
        "env",
        "DATABASE_URL",
    )
    assert rows["storage.secret_access_key"].value == "***"
    assert rows["storage.access_key_id"].value == "***"
    assert rows["storage.azure_connection_string"].value == "${NOPE} (not set)"
    assert rows["storage.classes"].value == {"monthly": "GLACIER_IR"}
    assert rows["storage.classes"].source == "file"
    assert rows["pg_bin_dir"].source == "flag"
    assert (rows["compression_level"].value, rows["compression_level"].source) == (3, "default")
    assert rows["storage.part_size"].value == 8 * 1024 * 1024
    assert "copy.to" in rows and "copy.storage.region" not in rows  # no [copy.storage] table
    text = repr(rows)
    for secret in ("hunter2-pw", "K001-very-secret", "AKIAFILE"):
        assert secret not in text


def test_a_variable_replaces_a_whole_table_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "bika.toml").write_text('[storage.classes]\nmonthly = "GLACIER_IR"\n')
    monkeypatch.setenv("BIKA_STORAGE__CLASSES", '{"daily": "STANDARD_IA"}')
    settings = load_settings()
    assert settings.storage.classes == {"daily": "STANDARD_IA"}
    row = next(row for row in settings.explain() if row.name == "storage.classes")
    assert (row.source, row.detail) == ("env", "BIKA_STORAGE__CLASSES")


def test_list_works_while_database_url_waits_for_an_unset_variable(
    keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    # reliability case 95: a ${VAR} only `backup` needs must not stop `list`
    (tmp_path / "bika.toml").write_text(
        f'repo = "{keyed_repo.repo}"\ndatabase_url = "${{UNSET_BIKA_DB}}"\n'
    )
    listed = run_bika("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    backup = run_bika("backup", cwd=tmp_path)
    assert backup.returncode == 2
    assert_clean_error(backup, "setting 'database_url'", "${UNSET_BIKA_DB}", "is not set")


def test_config_show_says_where_settings_came_from_and_never_prints_a_secret(
    tmp_path: Path,
) -> None:
    (tmp_path / "bika.toml").write_text('repo = "/srv/bika"\n[storage]\nazure_key = "${AZ_KEY}"\n')
    env = {
        "DATABASE_URL": "postgresql://app:hunter2-pw@db.example/app",
        "BIKA_STORAGE__SECRET_ACCESS_KEY": "K001-very-secret",
        "AZ_KEY": "az-key-secret",
    }
    shown = run_bika("config", "show", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()}
    assert lines["settings"] == "settings file: bika.toml"
    assert '"/srv/bika"' in lines["repo"] and lines["repo"].endswith("(file bika.toml)")
    assert '"postgresql://app:***@db.example/app"' in lines["database_url"]
    assert lines["database_url"].endswith("(env DATABASE_URL)")
    assert lines["storage.secret_access_key"].endswith("(env BIKA_STORAGE__SECRET_ACCESS_KEY)")
    assert lines["compression_level"].endswith("(default)")
    as_json = run_bika("config", "show", "--json", env=env, cwd=tmp_path)
    rows = {row["name"]: row for row in json.loads(as_json.stdout)["settings"]}
    assert rows["storage.azure_key"] == {
        "name": "storage.azure_key",
        "value": "***",
        "source": "file",
        "from": "bika.toml",
    }
    for secret in ("hunter2-pw", "K001-very-secret", "az-key-secret"):
        assert secret not in shown.stdout + shown.stderr + as_json.stdout + as_json.stderr
    found = run_bika("config", "path", cwd=tmp_path)
    assert (found.returncode, found.stdout) == (0, "bika.toml\n")
    (tmp_path / "bika.toml").unlink()
    assert run_bika("config", "path", cwd=tmp_path).returncode == 1


def test_a_misspelt_variable_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("BIKA_STORAGE__REGOIN", "eu")
    monkeypatch.setenv("BIKA_DEBUG", "1")  # the CLI's own: no warning
    with caplog.at_level("WARNING", logger="bika"):
        assert load_settings().storage.region is None
    assert [r.getMessage() for r in caplog.records] == [
        "BIKA_STORAGE__REGOIN is not a bika setting and is ignored;"
        " did you mean BIKA_STORAGE__REGION?"
    ]


def test_bika_variables_that_are_not_settings_draw_no_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIKA_IDENTITY_PASSPHRASE", "x")
    monkeypatch.setenv("BIKA_NOW", "2026-12-01T00:00:00+00:00")
    load_settings(None)
    assert "is not a bika setting" not in caplog.text
