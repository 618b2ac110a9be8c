"""This host's own state, kept beside no repository: $XDG_STATE_HOME/bika (default
~/.local/state/bika), as the XDG base directory spec asks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "bika"
