"""Every browser file Maillage vendors is committed, matches its pinned integrity hash and carries its licence."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def vendoring() -> ModuleType:
    """deploy/vendor_assets.py, the script that writes the files (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("vendor_assets", ROOT / "deploy" / "vendor_assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETS = vendoring().SETS


@pytest.mark.parametrize("name", sorted(SETS))
def test_each_vendored_file_is_committed_with_its_pinned_hash(name: str) -> None:
    target, packages = SETS[name]
    for spec, files in packages.items():
        for _, written, integrity in files:
            path = target / written
            assert path.is_file(), f"{spec}: {path} is missing (python deploy/vendor_assets.py {name})"
            if integrity is not None:
                digest = "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()
                assert digest == integrity, f"{path} differs from {spec}"


@pytest.mark.parametrize("name", sorted(SETS))
def test_each_vendored_package_folder_carries_a_licence(name: str) -> None:
    target, packages = SETS[name]
    folders = {(target / written).parent for files in packages.values() for _, written, _ in files}
    for folder in folders:
        assert (folder / "LICENSE").is_file(), folder


def test_the_console_uses_htmx_2_not_a_later_major() -> None:
    _, packages = SETS["console"]
    assert any(spec.startswith("htmx.org@2.") for spec in packages), packages
