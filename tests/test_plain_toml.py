"""The plain-TOML reader of the lean WAL path agrees with tomllib on every document it takes,
and hands everything else (malformed or not plain) to tomllib."""

from __future__ import annotations

import random
import tomllib

import pytest

from bika.wal.plain_toml import read_plain_toml

PLAIN = [
    'repo = "/var/backups/bika"\ndatabase_url = "${DATABASE_URL}"\n'
    'recipients = ["age1x", "age1y"]\ncompression_level = 3\n\n[backup]\n'
    'exclude_table_data = ["public.audit_log"]   # keep the table, not its rows\n',
    "repo='/x' # c\n[storage]\nendpoint = \"http://h:9000\"\npath_style = true\nmax_retries = 0\n",
    "a = [\n  'x', # one\n  \"y\",\n]\n[t]\nb=-5\n",
    "a = true\nb = false\nc = +7\nd = 0\ne = []\nf = [ 1, 2, ]\n",
    "a = 1\r\nb = 'é'\r\n[ t ]\nk = 'v'\t# tab\n",
    "x = \"a'b\"\ny = 'a\"b'\nz = ['a]', \"b#\"] # ]\n",
    "",
    "# nothing but a comment\n",
]
NOT_PLAIN = [
    "a = 1\na = 2\n",
    "[t]\n[t]\n",
    "t = 1\n[t]\n",
    "a = 'x\n",
    "a = 01\n",
    "a = 1.5\n",
    'a = "x\\ny"\n',
    'a = """x"""\n',
    "a = [1, 'x']\n",
    "a = [[1]]\n",
    "a.b = 1\n",
    '"q" = 1\n',
    "a = {b=1}\n",
    "[t.u]\n",
    "a = 1979-05-27\n",
    "a = 1_000\n",
    "a = 'x' junk\n",
    "a = [1 2]\n",
    "a = [\n1,\n2\n",
    "a = 1\rb = 2\n",
    "\ufeffa = 1\n",
]


@pytest.mark.parametrize("text", PLAIN)
def test_plain_documents_read_as_tomllib_reads_them(text: str) -> None:
    assert read_plain_toml(text) == tomllib.loads(text)


@pytest.mark.parametrize("text", NOT_PLAIN)
def test_anything_else_is_left_to_tomllib(text: str) -> None:
    assert read_plain_toml(text) is None


def test_random_documents_are_read_as_tomllib_reads_them_or_left_to_it() -> None:
    rng = random.Random(15)
    pieces = [*"ab=[]'\"#,\n 1-t.{}\\\t", "true", "false", "[s]\n", "x = ", "\r\n", "0"]
    taken = 0
    for _ in range(30000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 24)))
        mine = read_plain_toml(text)
        if mine is None:
            continue
        taken += 1
        assert mine == tomllib.loads(text), repr(text)  # a document tomllib refuses fails here
    assert taken > 300
