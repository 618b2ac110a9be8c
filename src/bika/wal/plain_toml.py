"""The plain TOML most bika.toml files are, read without tomllib (whose imports, typing and re
among them, cost more than the rest of a `wal push`): tables, bare keys, one-line strings
without escapes, true/false, decimal integers, arrays of those. Anything else, or anything
malformed, returns None: the caller then reads the file with tomllib, which decides."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SPACE = " \t"


def read_plain_toml(text: str) -> dict[str, Any] | None:
    """The document, if it is plain as above; else None."""
    if "\r" in text.replace("\r\n", "\n") or "\\" in text:
        return None
    root: dict[str, Any] = {}
    table = root
    tables: set[str] = set()
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        line = lines[index].strip(_SPACE)
        index += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            name, bracket, rest = line[1:].partition("]")
            name = name.strip(_SPACE)
            if (
                not bracket
                or not _is_bare(name)
                or name in tables
                or name in root
                or not _is_end(rest)
            ):
                return None
            tables.add(name)
            table = root[name] = {}
            continue
        key, eq, rest = line.partition("=")
        key = key.strip(_SPACE)
        if not eq or not _is_bare(key) or key in table:
            return None
        rest = rest.strip(_SPACE)
        if rest.startswith("["):  # an array may go on for lines
            while _depth(rest) > 0 and index < len(lines):
                rest += "\n" + lines[index]
                index += 1
        parsed = _value(rest)
        if parsed is None:
            return None
        value, after = parsed
        if not _is_end(after):
            return None
        table[key] = value
    return root


def _is_bare(key: str) -> bool:
    return bool(key) and _BARE.issuperset(key)


def _is_end(rest: str) -> bool:
    rest = rest.strip(_SPACE)
    return not rest or (rest.startswith("#") and _no_controls(rest))


def _no_controls(text: str) -> bool:
    return all(ch == "\t" or " " <= ch != "\x7f" for ch in text)


def _depth(text: str) -> int:
    """How many arrays are still open at the end of `text` (strings and comments skipped);
    -1 if a string does not close on its line."""
    depth = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            end = text.find(ch, i + 1)
            newline = text.find("\n", i + 1)
            if end < 0 or (0 <= newline < end):
                return -1
            i = end
        elif ch == "#":
            newline = text.find("\n", i)
            if newline < 0:
                return depth
            i = newline
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        i += 1
    return depth


def _value(text: str) -> tuple[Any, str] | None:
    """(value, the text after it) or None."""
    if not text:
        return None
    first = text[0]
    if first in "\"'":
        end = text.find(first, 1)
        if end < 0 or text.startswith(first * 3):
            return None
        content = text[1:end]
        if "\n" in content or not _no_controls(content):
            return None
        return content, text[end + 1 :]
    if first == "[":
        return _array(text[1:])
    stop = len(text)
    for mark in (" ", "\t", "\n", "#", ",", "]"):
        found = text.find(mark)
        if 0 <= found < stop:
            stop = found
    word, after = text[:stop], text[stop:]
    if word == "true":
        return True, after
    if word == "false":
        return False, after
    digits = word[1:] if word[:1] in "+-" else word
    if digits.isascii() and digits.isdigit() and (digits == "0" or not digits.startswith("0")):
        return int(word), after
    return None


def _array(text: str) -> tuple[list[Any], str] | None:
    items: list[Any] = []
    expect_value = True
    while True:
        skipped = _skip_blank(text)
        if not skipped:
            return None
        text = skipped
        if text.startswith("]"):
            return items, text[1:]
        if not expect_value:
            if not text.startswith(","):
                return None
            text = text[1:]
            expect_value = True
            continue
        parsed = _value(text)
        if parsed is None:
            return None
        value, text = parsed
        if isinstance(value, list) or (items and type(value) is not type(items[0])):
            return None  # nested or mixed arrays: tomllib's to judge
        items.append(value)
        expect_value = False


def _skip_blank(text: str) -> str | None:
    """`text` past spaces, newlines and comments (None if a comment holds a control)."""
    while True:
        text = text.lstrip(_SPACE + "\n")
        if not text.startswith("#"):
            return text
        line, newline, rest = text.partition("\n")
        if not _no_controls(line):
            return None
        text = rest if newline else ""
