"""Terminal output: untrusted text (labels, table names, paths, messages quoting them) is data,
escaped for the terminal and never read as markup; tables are plain aligned columns.

Every console bika prints through comes from console(), every table from print_table(), every
--json document from print_json().
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.style import Style
from rich.text import Text

from bika.untrusted import escape


def text(value: object) -> str:
    """value as a terminal may show it: control characters written as visible escapes
    ("\\x1b", "\\n"), everything else as is. Markup-looking text ("[/bold]") stays literal
    because bika's consoles never parse markup."""
    return escape(value)


def cell(value: object, style: str | Style = "") -> Text:
    """A table cell or a styled piece of a line, holding value as data."""
    return Text(text(value), style=style)


class DataConsole(Console):
    """A rich Console that reads every string it prints as data: control characters escaped,
    no markup, no emoji codes (":warning:"), whatever a caller passes."""

    def render_str(
        self,
        text_: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        return super().render_str(
            text(text_),
            style=style,
            justify=justify,
            overflow=overflow,
            emoji=False,
            markup=False,
            highlight=highlight,
            highlighter=highlighter,
        )

    def on_broken_pipe(self) -> None:
        # rich would exit 1 here; main.py ends every broken pipe alike (141, quietly)
        self.quiet = True
        raise BrokenPipeError


def console(stderr: bool = False) -> Console:
    """stdout's (or stderr's) console. Piped output keeps each line whole (no wrapping, no
    padding), for grep and for logs; on a terminal prose wraps at its width."""
    stream = sys.stderr if stderr else sys.stdout
    return DataConsole(
        stderr=stderr,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=not stream.isatty(),
    )


@dataclass(frozen=True)
class Column:
    header: str
    right: bool = False  # numbers and sizes line up on their last digit


Cell = str | Text


def print_table(
    out: Console, columns: Sequence[Column], rows: Iterable[Sequence[Cell]], title: str = ""
) -> None:
    """A table as restic prints one: a title line, a header, and one line per row in columns
    two spaces apart. Nothing is ever shortened, so an id can always be copied whole; a row
    wider than the terminal wraps there. On a terminal the header is bold and ruled; piped,
    the same lines arrive with no styles, no box drawing and no trailing spaces."""
    body = [[value if isinstance(value, Text) else cell(value) for value in row] for row in rows]
    header = [Text(column.header, style="bold") for column in columns]
    widths = [max(c.cell_len for c in cells) for cells in zip(header, *body, strict=False)]
    if title:
        out.print(cell(title), soft_wrap=True)
    out.print(_line(columns, widths, header), soft_wrap=True)
    if out.is_terminal:
        rule = min(sum(widths) + 2 * (len(widths) - 1), out.width)
        out.print(Text("-" * rule, style="dim"), soft_wrap=True)
    if body:
        # one print for every row: rich's cost is per print, and a year of backups is
        # thousands of rows
        out.print(Text("\n").join(_line(columns, widths, cells) for cells in body), soft_wrap=True)


def _line(columns: Sequence[Column], widths: Sequence[int], cells: Sequence[Text]) -> Text:
    if not any(value.style or value.spans for value in cells):
        # plain cells (most rows): aligned as strings, which is quicker than Text appends
        padded = []
        for column, width, value in zip(columns, widths, cells, strict=True):
            pad = " " * (width - value.cell_len)  # cells, not characters: a CJK label is wider
            padded.append(pad + value.plain if column.right else value.plain + pad)
        return Text("  ".join(padded).rstrip())
    line = Text()
    for index, (column, width, value) in enumerate(zip(columns, widths, cells, strict=True)):
        if index:
            line.append("  ")
        pad = " " * (width - value.cell_len)
        if column.right:
            line.append(pad)
            line.append_text(value)
        else:
            line.append_text(value)
            line.append(pad)
    line.rstrip()
    return line


# --json ----------------------------------------------------------------------------------


class JsonOutput:
    """Whether this run prints JSON, and whether it has printed its one document yet: stdout
    under --json holds exactly one JSON document, the result or the error."""

    def __init__(self) -> None:
        self.requested = False
        self.written = False


JSON = JsonOutput()


def print_json(payload: dict[str, Any]) -> None:
    """One JSON document on stdout, as json.dumps writes it: pure ASCII (control characters
    and non-ASCII escaped), never highlighted, the same on a terminal and in a pipe."""
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=True) + "\n")
    sys.stdout.flush()
    JSON.written = True
