"""The command line's contract: usage mistakes exit 2 with one line, global options go anywhere,
--version and --help say what a user needs. No server is needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import KeyedRepo, run_bika

USAGE_MISTAKES = [
    ((), "no command given"),
    (("backpu",), "did you mean 'backup'"),
    (("key", "gen"), "did you mean 'generate'"),
    (("key",), "no command given"),
    (("list", "--jsn"), "did you mean '--json'"),
    (("backup", "--bogus"), "no such option '--bogus'"),
    (("show",), "missing argument 'id'"),
    (("restore", "latest", "--jobs", "0", "--to", "postgresql://x@127.0.0.1/x"), "--jobs"),
    (("backup", "--kind", "hourly"), "'hourly' is not one of"),
    (("--quiet", "true", "list"), "no such command 'true'"),
    (("restore", "-x"), "no such option"),
]


@pytest.mark.parametrize(("args", "said"), USAGE_MISTAKES, ids=lambda v: str(v))
def test_usage_mistake_exits_2_with_one_line(args: tuple[str, ...], said: str) -> None:
    result = run_bika(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bika: usage: "), lines[0]
    assert said in lines[0].lower(), lines[0]
    assert "internal error" not in result.stderr
    assert result.stdout == ""


def test_version() -> None:
    for flag in ("--version", "-V"):
        result = run_bika(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith("bika 0."), result.stdout


def test_help_lists_commands_by_section_with_examples_and_exit_codes() -> None:
    result = run_bika("--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for heading in (
        "Back up:",
        "Look:",
        "Prove and watch:",
        "Restore:",
        "Examples:",
        "Exit codes:",
    ):
        assert heading in text
    for command in ("init", "backup", "list", "show", "verify", "drill", "restore", "doctor"):
        assert f"\n  {command} " in text, command
    assert "130" in text and "143" in text


def test_help_shows_env_hints_and_no_value_placeholders_on_flags() -> None:
    for command in ("backup", "restore", "verify", "drill", "list", "doctor"):
        text = " ".join(run_bika(command, "--help").stdout.split())
        assert "<bool>" not in text and "BOOLEAN" not in text, command
        assert "[env: BIKA_REPO]" in text, command
        assert "Global options:" in text and "--quiet" in text, command
    backup = " ".join(run_bika("backup", "--help").stdout.split())
    assert "[env: BIKA_DATABASE_URL, DATABASE_URL]" in backup
    assert "[env: BIKA_IDENTITY]" in " ".join(run_bika("restore", "--help").stdout.split())
    assert run_bika("restore", "-h").returncode == 0


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_before_or_after_the_command(tmp_path: Path, where: str) -> None:
    missing = tmp_path / "nope"
    args = ["list", "--repo", str(missing)]
    options = ["--quiet", "--debug"]
    argv = [*options, *args] if where == "before" else [*args, *options]
    result = run_bika(*argv)
    # --debug shows the traceback, which proves the option was taken after the command too
    assert result.returncode == 1
    assert "no bika repository" in result.stderr
    assert "Traceback" in result.stderr
    config = tmp_path / "bika.toml"
    config.write_text(f'repo = "{missing}"\n')
    argv = (
        ["--config", str(config), "list"]
        if where == "before"
        else ["list", "--config", str(config)]
    )
    result = run_bika(*argv)
    assert result.returncode == 1
    assert f"no bika repository at {missing}" in result.stderr


def test_interrupt_and_terminate_exit_quietly_with_one_message(tmp_path: Path) -> None:
    """SIGINT → 130, SIGTERM → 143, each with one line and no traceback (here while `bika demo`
    starts, which runs long enough to be signalled)."""
    for signum, code, word in (
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGTERM, 143, "terminated"),
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIKA_")}
        child = subprocess.Popen(
            [sys.executable, "-m", "bika", "demo", "--dir", str(tmp_path / word)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # signalled once it is at work (a fixed sleep let a fast machine finish the demo first)
        assert child.stderr is not None
        first = child.stderr.readline()
        assert "starting a throwaway PostgreSQL server" in first, first
        child.send_signal(signum)
        _, rest = child.communicate(timeout=60)
        err = first + rest
        assert child.returncode == code, err
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1] == f"bika: {word}", err


def test_shell_completion_script_and_answers() -> None:
    script = run_bika("completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "_BIKA_COMPLETE=bash_complete" in script.stdout
    answer = run_bika(
        env={"_BIKA_COMPLETE": "bash_complete", "COMP_WORDS": "bika res", "COMP_CWORD": "1"}
    )
    assert answer.returncode == 0, answer.stderr
    assert "restore" in answer.stdout


def test_help_on_a_terminal_that_cannot_show_unicode() -> None:
    result = run_bika("backup", "--help", env={"PYTHONIOENCODING": "latin-1"})
    assert result.returncode == 0, result.stderr
    assert "pg_dump \\u2192 zstd" in result.stdout


def test_verify_of_an_empty_repository_fails(keyed_repo: KeyedRepo) -> None:
    result = run_bika("verify", "--repo", str(keyed_repo.repo))
    assert result.returncode == 1
    assert "holds no backups: nothing was verified" in result.stderr


def test_a_key_setting_that_is_not_a_key_is_a_usage_error(
    keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    missing = run_bika(
        "verify", "--repo", str(keyed_repo.repo), "--read-data", "-i", str(tmp_path / "nope")
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad = run_bika("init", "--repo", str(tmp_path / "r"), "--recipient", "age1xyz")
    assert bad.returncode == 2 and "is not an age recipient" in bad.stderr
