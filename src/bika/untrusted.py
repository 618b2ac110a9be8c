"""Untrusted text (labels, table names, paths, messages quoting them) made safe to show: every
control character written as a visible escape, so none can move a cursor or clear a terminal.
"""

from __future__ import annotations

import re

# C0 controls (newline and tab too: one value stays on one line), DEL, C1 controls, the line
# and paragraph separators, and the bidirectional overrides and isolates that reorder what a
# terminal shows ("Trojan source")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: object) -> str:
    """value as a terminal may show it: "\\x1b" for ESC, "\\n" for a newline, everything
    else as is."""
    return _UNSAFE.sub(_escape, str(value))
