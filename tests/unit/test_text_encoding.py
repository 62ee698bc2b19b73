"""Text with line breaks and control characters, in every field that reaches a feed, an e-mail or a CSV export,
is encoded for that format: each document parses back with its own library to what was meant."""

from __future__ import annotations

import csv
import io
import unicodedata
from email import message_from_bytes, policy
from typing import Any

import icalendar
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import mail
from services.common.encoding import FORMULA_STARTS, csv_cell, one_line, text_lines
from services.common.settings import Settings
from services.contracts.events import PlaceV1
from services.events import ical
from services.events.model import Organizer
from tests.unit.test_events_model import ORGANIZER, read

# Every line separator Python, iCalendar, e-mail and JavaScript know of, and other control characters.
BREAKS = ["\r", "\n", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
CONTROLS = ["\x00", "\x01", "\x08", "\x1b", "\x1f", "\x7f", "\x9f", "\t"]
INJECTIONS = ["Bcc: pirate@example.org", "X-Injected: oui", "END:VEVENT", "BEGIN:VALARM", "=HYPERLINK()", '"', ";", ","]
awkward_text = st.lists(
    st.sampled_from(BREAKS) | st.sampled_from(CONTROLS) | st.sampled_from(INJECTIONS) | st.text(max_size=5),
    max_size=8,
).map("".join)
TEXTS = settings(max_examples=150, deadline=None, derandomize=True, database=None)
LINE_BOUNDARIES = "".join(BREAKS)


def is_one_line(text: str) -> bool:
    return len(text.splitlines()) <= 1 and not any(unicodedata.category(char) == "Cc" for char in text)


class TestOneLineAndLines:
    @TEXTS
    @given(text=awkward_text)
    def test_one_line_leaves_no_line_break_nor_control_character(self, text: str) -> None:
        assert is_one_line(one_line(text))
        assert one_line(one_line(text)) == one_line(text)

    @TEXTS
    @given(text=awkward_text)
    def test_text_lines_breaks_lines_on_line_feeds_only(self, text: str) -> None:
        lines = text_lines(text)
        assert lines.splitlines() == lines.split("\n")[: len(lines.splitlines())]
        assert all(is_one_line(line.replace("\t", " ")) for line in lines.split("\n"))

    def test_examples(self) -> None:
        assert one_line("Forum\r\nBcc: x@y.fr\u2028\x85 fin ") == "Forum Bcc: x@y.fr fin"
        assert text_lines("un\r\ndeux\rtrois\u2028quatre\x00\tfin") == "un\ndeux\ntrois\nquatre\tfin"


class TestICalendar:
    @settings(TEXTS, max_examples=100)  # building a calendar takes tens of milliseconds
    @given(title=awkward_text, description=awkward_text, address=awkward_text, organizer=awkward_text)
    def test_a_feed_parses_back_whatever_the_titles_and_names(
        self, title: str, description: str, address: str, organizer: str
    ) -> None:
        event = read(
            title=title,
            description=description,
            place=PlaceV1(address=address or None, commune_code="25056"),
            organizers=[Organizer(id=ORGANIZER, name=organizer or None, kind="tiers_lieu", status="active")],
        )
        data = ical.calendar([event], f"Maillage — {organizer}", {event.id: "https://example.org/e/1"})
        assert all(b"\r" not in line and b"\n" not in line for line in data.split(b"\r\n")), "no bare CR or LF"
        cal = icalendar.Calendar.from_ical(data)
        (vevent,) = cal.walk("VEVENT")
        assert str(vevent["SUMMARY"]) == one_line(title)
        assert str(vevent.get("DESCRIPTION", "")) == text_lines(description)
        assert vevent["ORGANIZER"].params["CN"] == one_line(organizer or ORGANIZER)
        assert one_line(address) in str(vevent["LOCATION"])
        assert str(cal["X-WR-CALNAME"]) == one_line(f"Maillage — {organizer}")
        assert str(vevent["UID"]) == ical.uid(event.id), "every property after them is still there"


class TestEmail:
    @TEXTS
    @given(subject=awkward_text, body=awkward_text)
    def test_an_email_parses_back_with_exactly_its_headers(self, subject: str, body: str) -> None:
        settings = Settings(_env_file=None)
        message = mail.message(settings, "lea@example.org", subject, body, "8d3bf87")
        back = message_from_bytes(message.as_bytes(policy=policy.SMTP), policy=policy.default)
        assert sorted(back.keys()) == sorted(
            ["From", "To", "Subject", "Message-ID", "Content-Type", "Content-Transfer-Encoding", "MIME-Version"]
        )
        # A subject longer than a line is folded after "Subject:", and unfolds with that one leading space.
        assert str(back["Subject"]).strip() == one_line(subject)
        assert back["To"].addresses[0].addr_spec == "lea@example.org" and len(back["To"].addresses) == 1
        content: Any = back.get_content()
        assert content.replace("\r\n", "\n").rstrip("\n") == text_lines(body).rstrip("\n")

    def test_a_recipient_that_is_not_exactly_one_address_is_refused(self) -> None:
        settings = Settings(_env_file=None)
        for to in ("a@b.fr\r\nBcc: pirate@example.org", "a,b@c.fr", "Léa <pirate@example.org>", "a\x01b@c.fr"):
            try:
                mail.message(settings, to, "Sujet", "Corps", "1")
            except ValueError:
                continue
            raise AssertionError(f"{to!r} accepted")


class TestCsv:
    @TEXTS
    @given(cells=st.lists(awkward_text.filter(lambda t: "\x00" not in t), min_size=1, max_size=5))
    def test_a_csv_parses_back_and_no_cell_starts_a_formula(self, cells: list[str]) -> None:
        out = io.StringIO()
        csv.writer(out, delimiter=";").writerow([csv_cell(cell) for cell in cells])
        (row,) = list(csv.reader(io.StringIO(out.getvalue(), newline=""), delimiter=";"))
        assert row == [csv_cell(cell) for cell in cells]
        for cell, written in zip(cells, row, strict=True):
            if cell.startswith(FORMULA_STARTS) or (cell and (cell[0].isspace() or not cell[0].isprintable())):
                assert written == "'" + cell
            else:
                assert written == cell

    def test_examples(self) -> None:
        cells = ["=1+1", "+33 6", "-x", "@SUM(A1)", "\t=1", "\r=1", " =1", "\x1c=1", "Léa", None, 3]
        assert [csv_cell(v) for v in cells] == [
            "'=1+1",
            "'+33 6",
            "'-x",
            "'@SUM(A1)",
            "'\t=1",
            "'\r=1",
            "' =1",
            "'\x1c=1",
            "Léa",
            "",
            "3",
        ]


def test_line_boundaries_cover_what_python_splits_lines_on() -> None:
    assert all(len(f"a{char}b".splitlines()) == 2 for char in LINE_BOUNDARIES)
