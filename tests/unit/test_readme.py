"""The README documents every setting: its configuration table is the one the code generates."""

from __future__ import annotations

from pathlib import Path

from services.common.settings import Settings, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text()
    assert settings_table() in text, (
        "regenerate the table: python -c 'from services.common.settings import settings_table; print(settings_table())'"
    )
    for name in Settings.model_fields:
        assert f"`MAILLAGE_{name.upper()}`" in text
