"""Rebuild `territories.json.gz` from the npm package @etalab/decoupage-administratif (run when INSEE updates it)."""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PACKAGE = "@etalab/decoupage-administratif"
HERE = Path(__file__).parent
OUTPUT = HERE / "territories.json.gz"
LICENSE_FILE = HERE / "TERRITORIES_LICENSE.md"


def fetch(version: str | None, workdir: Path) -> Path:
    spec = f"{PACKAGE}@{version}" if version else PACKAGE
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to fetch the package")
    name = (
        subprocess.run([npm, "pack", spec], cwd=workdir, check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    with tarfile.open(workdir / name) as archive:
        archive.extractall(workdir, filter="data")
    return workdir / "package"


def build(package: Path) -> dict[str, Any]:
    def load(name: str) -> Any:
        return json.loads((package / "data" / name).read_text(encoding="utf-8"))

    epci_of: dict[str, str] = {}
    epci: dict[str, list[Any]] = {}
    for group in load("epci.json"):
        members = sorted(member["code"] for member in group["membres"])
        epci[group["code"]] = [group["nom"], group["type"], members]
        for code in members:
            epci_of[code] = group["code"]
    communes: dict[str, list[Any]] = {}
    former: dict[str, list[Any]] = {}
    for commune in load("communes.json"):
        if commune["type"] == "commune-actuelle":
            communes[commune["code"]] = [
                commune["nom"],
                commune["departement"],
                commune["region"],
                epci_of.get(commune["code"]),
                commune.get("population", 0),
                commune.get("codesPostaux", []),
            ]
    for commune in load("communes.json"):
        if commune["type"] == "commune-actuelle" or commune["code"] in communes:
            continue  # a commune déléguée keeping the code of the new commune resolves to itself
        current = commune.get("chefLieu") or commune.get("commune")
        if current in communes:
            former[commune["code"]] = [current, commune["nom"], commune["type"]]
    departements = {d["code"]: [d["nom"], d["region"]] for d in load("departements.json")}
    regions = {r["code"]: r["nom"] for r in load("regions.json")}
    version = json.loads((package / "package.json").read_text())["version"]
    return {
        "source": f"{PACKAGE}@{version}",
        "communes": communes,
        "former": former,
        "epci": epci,
        "departements": departements,
        "regions": regions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--version", help="package version (default: latest)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package = fetch(args.version, Path(tmp))
        data = build(package)
        licence = (package / "LICENSE").read_text(encoding="utf-8")
    raw = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    with OUTPUT.open("wb") as handle, gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as gz:
        gz.write(raw)
    LICENSE_FILE.write_text(
        f"# Territorial reference data\n\n`territories.json.gz` is derived from the npm package `{data['source']}`"
        f" (Etalab, MIT licence), built on {datetime.now(UTC).date().isoformat()} by `build_territories.py`.\n\n"
        "It holds the official INSEE lists of current communes (name, département, région, EPCI, population,"
        " postal codes), former communes (déléguées, associées) and municipal arrondissements mapped to their"
        " current commune, EPCI with their members, départements and régions. It carries no coordinates and"
        " no list of quartiers prioritaires (QPV).\n\n## Licence of the source package\n\n```\n" + licence + "\n```\n",
        encoding="utf-8",
    )
    print(
        f"{OUTPUT.name}: {len(data['communes'])} communes, {len(data['former'])} former, "
        f"{len(data['epci'])} EPCI, {OUTPUT.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
