"""Where bika's settings file is: --config, $BIKA_CONFIG, else the first of the usual places.

Standard library only, and not even pathlib at import: the lean `wal push`/`wal fetch` path
finds its settings the same way as the full CLI (config.py) without paying for either.
"""

from __future__ import annotations

import os

from bika.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

CONFIG_NAME = "bika.toml"
SYSTEM_CONFIG = os.path.join("/etc/bika", CONFIG_NAME)


def candidate_files(environ: Mapping[str, str]) -> list[str]:
    """Where bika looks for its settings file when neither --config nor BIKA_CONFIG says."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(xdg):  # the XDG spec: a relative value is to be ignored
        home = environ.get("HOME")
        xdg = os.path.join(home, ".config") if home else ""
    user = [os.path.join(xdg, "bika", CONFIG_NAME)] if xdg else []
    return [CONFIG_NAME, *user, str(SYSTEM_CONFIG)]


def find_config_file(config: str | None, environ: Mapping[str, str]) -> str | None:
    """The settings file: --config, BIKA_CONFIG, or the first candidate that exists."""
    if config is not None:
        if not os.path.isfile(config):
            raise ConfigError(f"config file {config} does not exist")
        return config
    named = environ.get("BIKA_CONFIG")
    if named:
        if not os.path.isfile(named):
            raise ConfigError(
                f"BIKA_CONFIG names {named}, which does not exist; fix or unset the variable"
            )
        return named
    return next((path for path in candidate_files(environ) if os.path.isfile(path)), None)


def config_candidates(environ: Mapping[str, str]) -> list[Path]:
    from pathlib import Path

    return [Path(path) for path in candidate_files(environ)]


def find_config(config: Path | None, environ: Mapping[str, str]) -> Path | None:
    from pathlib import Path

    found = find_config_file(None if config is None else str(config), environ)
    return None if found is None else Path(found)
