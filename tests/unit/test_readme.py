"""The README documents every setting: its configuration table is the one the code generates."""

from __future__ import annotations

import re
from pathlib import Path

from services.common.settings import Settings, settings_table
from services.contracts.errors import ErrorCode

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text()
    assert settings_table() in text, (
        "regenerate the table: python -c 'from services.common.settings import settings_table; print(settings_table())'"
    )
    for name in Settings.model_fields:
        assert f"`MAILLAGE_{name.upper()}`" in text


def test_the_published_error_codes_are_the_contracts() -> None:
    text = README.read_text()
    item = text.split("- Errors carry `extensions.code`:", 1)[1].split("\n- ", 1)[0]
    published = re.findall(r"`([A-Z][A-Z_]+)`", item)
    assert published == [code.value for code in ErrorCode]
