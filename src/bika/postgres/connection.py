"""Connection strings: parsed once, passwords kept out of argv, messages and manifests.

pg_dump and friends get the password through PGPASSWORD, never on their command line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bika.errors import ConfigError, PostgresError
from bika.supabase.endpoints import gssapi_hint, with_supabase_defaults

if TYPE_CHECKING:
    import psycopg

# psycopg is imported where a connection string is parsed or a connection made, not with this
# module: it takes a seventh of a second, which `bika list` and the like need not pay


@dataclass(frozen=True)
class ConnInfo:
    url: str

    @classmethod
    def parse(cls, url: str) -> ConnInfo:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(url)
            malformed = _url_problem(url)
        except psycopg.ProgrammingError:
            malformed = "-"
        if malformed:
            why = f" ({malformed})" if malformed != "-" else ""
            # from None: psycopg's message quotes the part of the password it choked on
            raise ConfigError(
                f"database URL {redact(url)!r} is malformed{why}; expected"
                " postgresql://user@host:port/dbname (a password goes after the user, as"
                " user:password, with @ : / % # ? in it percent-encoded: @ as %40)"
            ) from None
        return cls(with_supabase_defaults(url))

    @property
    def params(self) -> dict[str, Any]:
        from psycopg.conninfo import conninfo_to_dict

        return dict(conninfo_to_dict(self.url))

    @property
    def database(self) -> str:
        return str(self.params.get("dbname") or self.params.get("user") or "postgres")

    @property
    def password(self) -> str | None:
        value = self.params.get("password")
        return str(value) if value else None

    def with_database(self, dbname: str) -> ConnInfo:
        from psycopg.conninfo import make_conninfo

        return ConnInfo(make_conninfo(self.url, dbname=dbname))

    def libpq_args(self) -> tuple[str, dict[str, str]]:
        """A conninfo string without the password, and the environment that carries it."""
        from psycopg.conninfo import make_conninfo

        params = {k: str(v) for k, v in self.params.items() if k != "password"}
        params.setdefault("dbname", self.database)
        env = {"PGPASSWORD": self.password} if self.password else {}
        env["PGAPPNAME"] = "bika"
        return make_conninfo("", **params), env

    def redacted(self) -> str:
        return redact(self.url)

    def host_hash(self) -> str:
        p = self.params
        where = f"{p.get('host', '')}:{p.get('port', '5432')}"
        return hashlib.sha256(where.encode()).hexdigest()[:16]

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=15, application_name="bika", **kwargs)
        except psycopg.OperationalError as exc:
            said = first_lines(scrub(str(exc), self))
            raise PostgresError(
                f"cannot connect to {self.redacted()}: {said}{gssapi_hint(said)}"
            ) from None

    def scrub(self, text: str) -> str:
        return scrub(text, self)


# The password runs to the *last* @ of the (quoted) URL: an unencoded @ in it must not show the
# rest of it.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^'\"\n]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _url_problem(url: str) -> str:
    """What libpq would take the wrong way in a postgresql:// URL ("" if nothing): a second @
    (an unencoded one in the user or password) or a port that is not a number."""
    scheme, sep, rest = url.partition("://")
    if not sep or "=" in scheme:
        return ""  # a key=value conninfo string
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    userinfo, at, hosts = authority.rpartition("@")
    if at and "@" in userinfo:
        return "more than one @"
    for host in hosts.split(","):
        port = host.rsplit("]", 1)[-1].partition(":")[2]
        if port and not port.isdigit():
            return f"port {port!r} is not a number"
    return ""


def redact(text: str) -> str:
    """Hide passwords in URLs and key=value connection strings."""
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    return _KV_PASSWORD.sub(r"\1***", text)


def scrub(text: str, conn: ConnInfo | None) -> str:
    text = redact(text)
    if conn is not None and conn.password:
        text = text.replace(conn.password, "***")
    return text


def first_lines(text: str) -> str:
    """The first two non-empty lines of a message, joined with "; " (psycopg puts the DETAIL a
    person needs on the second line)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else "no details"
