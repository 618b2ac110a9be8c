"""The status page in a real headless browser (Debian's chromium): it loads without console
errors and shows a real repository's backups; the screenshot is kept with the test's files."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg

from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, run_bika

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_page_shows_the_backups_in_a_real_browser(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    with psycopg.connect(url) as db:
        db.execute("CREATE TABLE members (id int PRIMARY KEY, name text)")
        db.execute("INSERT INTO members SELECT g, 'm' || g FROM generate_series(1, 300) g")
    first = keyed_repo.backup(url, "--label", "<script>alert(1)</script> [/bold]")
    with psycopg.connect(url) as db:
        db.execute("INSERT INTO members SELECT g, 'm' || g FROM generate_series(301, 600) g")
    second = keyed_repo.backup(url)
    html = tmp_path / "status.html"
    made = run_bika("report", "--repo", str(keyed_repo.repo), "--html", str(html))
    assert made.returncode == 0, made.stderr
    dom = _browser(tmp_path, "--dump-dom", html.as_uri())
    assert dom.returncode == 0, dom.stderr
    for backup_id in (first, second):
        assert backup_id in dom.stdout
    assert "600" in dom.stdout and "<svg" in dom.stdout
    # the label is shown as text, never run as a script
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [/bold]" in dom.stdout
    assert "<script>" not in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    shot = tmp_path / "status.png"
    taken = _browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,900", html.as_uri())
    assert taken.returncode == 0, taken.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kept = Path(__file__).resolve().parent.parent / "test-artifacts" / "status-page.png"
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, kept)
    print(f"screenshot of the status page: {kept}")
