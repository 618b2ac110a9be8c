"""Where bika's settings file is: --config, $BIKA_CONFIG, else the first of the usual places.

Standard library only: the lean `wal push`/`wal fetch` path finds its settings the same way as
the full CLI (config.py) without importing pydantic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bika.errors import ConfigError

CONFIG_NAME = "bika.toml"
SYSTEM_CONFIG = Path("/etc/bika") / CONFIG_NAME


def config_candidates(environ: Mapping[str, str]) -> list[Path]:
    """Where bika looks for its settings file when neither --config nor BIKA_CONFIG says."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(xdg):  # the XDG spec: a relative value is to be ignored
        home = environ.get("HOME")
        xdg = os.path.join(home, ".config") if home else ""
    user = [Path(xdg) / "bika" / CONFIG_NAME] if xdg else []
    return [Path(CONFIG_NAME), *user, SYSTEM_CONFIG]


def find_config(config: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The settings file: --config, BIKA_CONFIG, or the first candidate that exists."""
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"config file {config} does not exist")
        return config
    named = environ.get("BIKA_CONFIG")
    if named:
        if not Path(named).is_file():
            raise ConfigError(
                f"BIKA_CONFIG names {named}, which does not exist; fix or unset the variable"
            )
        return Path(named)
    return next((path for path in config_candidates(environ) if path.is_file()), None)
