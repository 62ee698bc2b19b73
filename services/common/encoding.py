"""Text made safe for the formats it flows into: one-line values (e-mail headers, iCalendar names), multi-line
text, and CSV cells that a spreadsheet will not run as formulas."""

from __future__ import annotations

import re
from typing import Any

# Every character `str.splitlines` breaks on (\n \r \v \f \x1c-\x1e \x85 \u2028 \u2029), and the other C0 and C1
# controls: iCalendar's TEXT and e-mail headers allow none of them, and several parsers split lines on them.
_LINE_BREAKS_AND_CONTROLS = re.compile(r" *[\x00-\x1f\x7f-\x9f\u2028\u2029]+ *")
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_CONTROLS_BUT_TAB_AND_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
FORMULA_STARTS = ("=", "+", "-", "@")


def one_line(text: str) -> str:
    """`text` on one line: each run of line breaks and control characters (and the spaces around) becomes one
    space."""
    return _LINE_BREAKS_AND_CONTROLS.sub(" ", text).strip()


def text_lines(text: str) -> str:
    """`text` with every kind of line break as \\n and no other control character but the tab."""
    return _CONTROLS_BUT_TAB_AND_NEWLINE.sub("", _LINE_BREAK.sub("\n", text))


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a cell starting like a formula (=, +, -, @) or with a blank or a
    control character (tab, carriage return, which some spreadsheets skip before a formula) gets a leading
    apostrophe, as OWASP's advice on CSV injection says."""
    text = "" if value is None else str(value)
    if not text:
        return text
    if not text[0].isprintable() or text[0].isspace() or text.startswith(FORMULA_STARTS):
        return "'" + text
    return text
