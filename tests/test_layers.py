"""One home per PostgreSQL mechanism: no SQL, no psycopg and no pg_dump/pg_restore/psql option
in src/bika/operations/ (they belong in src/bika/postgres/, see docs/ARCHITECTURE.md). No server.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "bika"

# Modules still holding SQL on purpose, each with the reason: the list only ever shrinks.
NOT_YET = {
    "doctor.py": "its two server questions move to postgres/ with the doctor redesign (issue 10)",
}

SQL = re.compile(
    r"^\s*(SELECT|SHOW|SET|CREATE|DROP|ALTER|INSERT|UPDATE|DELETE|TRUNCATE|BEGIN|COMMIT"
    r"|DO \$\$|WITH)\s"
)
OPTION = re.compile(r"^--[a-z][a-z-]*=?")
RUNS_SQL = {"execute", "executemany", "fetchone", "fetchall", "cursor"}
# Options of pg_dump, pg_dumpall, pg_restore and psql that bika passes, besides those found in
# postgres/ itself (collected below).
PG_OPTIONS = {
    "--use-list",
    "--list",
    "--jobs",
    "--single-transaction",
    "--file",
    "--dbname",
    "--no-owner",
    "--no-privileges",
    "--schema-only",
    "--data-only",
    "--disable-triggers",
    "--roles-only",
    "--no-role-passwords",
    "--no-psqlrc",
    "--if-exists",
    "--format",
    "--verbose",
}


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal, f-string pieces included, with its line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for stmt in body:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    lines.add(stmt.value.lineno)
    return lines


def _option(text: str) -> str | None:
    """The option a string literal is, when it is one argv element ("--jobs=", "--list")."""
    if any(c.isspace() for c in text):
        return None
    match = OPTION.match(text)
    return match.group(0).rstrip("=") if match else None


def _postgres_options() -> set[str]:
    options = set(PG_OPTIONS)
    for path in (SRC / "postgres").glob("*.py"):
        for _, text in _strings(ast.parse(path.read_text())):
            option = _option(text)
            if option:
                options.add(option)
    return options


def _offences(source: str, where: str, options: set[str]) -> list[str]:
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        calls = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        if calls and node.func.attr in RUNS_SQL:  # type: ignore[attr-defined]
            found.append(f"{where}:{node.lineno}: runs SQL (.{node.func.attr})")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            if any(n and n.split(".")[0] == "psycopg" for n in names):
                found.append(f"{where}:{node.lineno}: imports psycopg")
    for line, text in _strings(tree):
        if line in docs:
            continue
        if SQL.match(text):
            found.append(f"{where}:{line}: SQL {text[:40]!r}")
        option = _option(text)
        if option in options:
            found.append(f"{where}:{line}: PostgreSQL tool option {text!r}")
    return found


def test_operations_hold_no_sql_and_no_postgres_tool_argv() -> None:
    options = _postgres_options()
    offences = []
    for path in sorted((SRC / "operations").rglob("*.py")):
        if path.name in NOT_YET and path.parent.name == "operations":
            continue
        offences += _offences(path.read_text(), str(path.relative_to(SRC.parent)), options)
    assert not offences, "move these into src/bika/postgres/:\n" + "\n".join(offences)


def test_the_scan_finds_sql_argv_and_psycopg() -> None:
    sample = (
        "import psycopg\n"
        "def f(db, tool):\n"
        "    db.execute('SELECT 1 FROM pg_database')\n"
        "    return [tool, '--use-list', f'--jobs={2}', 'a message about --jobs']\n"
    )
    found = _offences(sample, "sample.py", _postgres_options())
    assert any("imports psycopg" in f for f in found)
    assert any("runs SQL" in f for f in found)
    assert any("SQL 'SELECT 1" in f for f in found)
    assert any("'--use-list'" in f for f in found)
    assert any("'--jobs='" in f for f in found)
    assert not any("a message" in f for f in found)


# Libraries the read-only commands do not need, and which cost their start-up (a tenth of a
# second and more each): docs/ARCHITECTURE.md, "Layers and the import rules".
NOT_AT_START = ("psycopg", "apprise", "prometheus_client", "bika.operations.restore")


def test_list_check_and_prune_start_without_the_libraries_they_do_not_use() -> None:
    import subprocess
    import sys

    modules = ["bika.cli.main", *(f"bika.cli.{name}_cmd" for name in ("list", "check", "prune"))]
    script = "; ".join(
        [*(f"import {module}" for module in modules), "import sys", "print(sorted(sys.modules))"]
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(SRC.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(ast.literal_eval(result.stdout))
    assert "bika.cli.list_cmd" in loaded
    assert [name for name in NOT_AT_START if name in loaded] == []
