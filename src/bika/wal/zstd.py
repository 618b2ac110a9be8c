"""zstandard's C extension for `wal push`/`wal fetch`, loaded without the zstandard package's
__init__, which imports `platform` only to ask "CPython?": a fifth of the push's start-up.

The extension is found and loaded the way the import system would (importlib.machinery's
PathFinder and ExtensionFileLoader) and registered as zstandard.backend_c, so a later
`import zstandard` reuses it. Anything unexpected falls back to the plain import.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_BACKEND = "zstandard.backend_c"


def zstd() -> Any:
    """A module with ZstdCompressor, ZstdDecompressor and ZstdError (zstandard's C backend)."""
    loaded = sys.modules.get(_BACKEND)
    if loaded is not None:
        return loaded
    try:
        from importlib.machinery import ExtensionFileLoader, PathFinder

        package = PathFinder.find_spec("zstandard")
        locations = package.submodule_search_locations if package else None
        spec = PathFinder.find_spec(_BACKEND, locations) if locations else None
        if spec is None or not isinstance(spec.loader, ExtensionFileLoader):
            raise ImportError(_BACKEND)
        module = spec.loader.create_module(spec)
        spec.loader.exec_module(module)
        sys.modules[_BACKEND] = module
        return module
    except ImportError:
        import zstandard

        return zstandard
