"""Vendor the browser files Maillage serves or tests with, from npm, at pinned versions: python deploy/vendor_assets.py

Every page the gateway serves loads only the gateway's own files, so a browser runs no third-party script next to
a token or a session and the pages work offline. Each set below is written to its folder with each package's
licence, and each file must match its pinned Subresource Integrity hash:
- `graphiql` (gateway/static/graphiql/): the versions strawberry's own GraphiQL page names, with the hashes that
  page gives them (the same hashes are in gateway/graphiql.html);
- `console` (gateway/console/static/vendor/): htmx 2.x and its server-sent events extension, for the web console;
- `browser-tests` (tests/vendor/): axe-core, the accessibility engine the browser tests inject in pages.
Needs `npm` and the npm registry; `make run` and `make test` need neither (the files are committed).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# npm package@version -> (file inside its tarball, file written under the set's folder, SRI hash or None for a licence)
Files = dict[str, list[tuple[str, str, str | None]]]

GRAPHIQL: Files = {
    "react@18.2.0": [
        (
            "package/umd/react.production.min.js",
            "react/react.production.min.js",
            "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
        ),
        ("package/LICENSE", "react/LICENSE", None),
    ],
    "react-dom@18.2.0": [
        (
            "package/umd/react-dom.production.min.js",
            "react-dom/react-dom.production.min.js",
            "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
        ),
        ("package/LICENSE", "react-dom/LICENSE", None),
    ],
    "graphiql@3.8.3": [
        (
            "package/graphiql.min.js",
            "graphiql/graphiql.min.js",
            "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
        ),
        (
            "package/graphiql.min.css",
            "graphiql/graphiql.min.css",
            "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
        ),
        ("package/LICENSE", "graphiql/LICENSE", None),
        # @graphiql/plugin-explorer ships no licence file: it is MIT, from the same repository and holders.
        ("package/LICENSE", "plugin-explorer/LICENSE", None),
    ],
    "@graphiql/plugin-explorer@1.0.2": [
        (
            "package/dist/index.umd.js",
            "plugin-explorer/index.umd.js",
            "sha384-2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9",
        ),
        (
            "package/dist/style.css",
            "plugin-explorer/style.css",
            "sha384-5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi",
        ),
    ],
    # Bundled inside the explorer plugin's UMD file.
    "graphiql-explorer@0.9.0": [("package/LICENSE", "plugin-explorer/LICENSE.graphiql-explorer", None)],
}

# htmx 2.x, not 4.x: the console is written against 2's attributes and extension API.
CONSOLE: Files = {
    "htmx.org@2.0.11": [
        (
            "package/dist/htmx.min.js",
            "htmx/htmx.min.js",
            "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg",
        ),
        ("package/LICENSE", "htmx/LICENSE", None),
    ],
    "htmx-ext-sse@2.2.4": [
        (
            "package/dist/sse.js",
            "htmx-ext-sse/sse.js",
            "sha384-QA9wXqexhwzXTuTvuF5QP82pddm3R2hy81UzXi7ioNTqNF2b75hlkkSGjafohhL3",
        ),
        ("package/LICENSE", "htmx-ext-sse/LICENSE", None),
    ],
}

BROWSER_TESTS: Files = {
    "axe-core@4.14.1": [
        (
            "package/axe.min.js",
            "axe-core/axe.min.js",
            "sha384-xt1SFg49QaDwsyt0Xfs2XAyBtYPClXl3X2q5OOLeGAUmq9jZTYIMdztpF99WdhiH",
        ),
        ("package/LICENSE", "axe-core/LICENSE", None),
        ("package/LICENSE-3RD-PARTY.txt", "axe-core/LICENSE-3RD-PARTY.txt", None),
    ],
}

SETS: dict[str, tuple[Path, Files]] = {
    "graphiql": (ROOT / "gateway" / "static" / "graphiql", GRAPHIQL),
    "console": (ROOT / "gateway" / "console" / "static" / "vendor", CONSOLE),
    "browser-tests": (ROOT / "tests" / "vendor", BROWSER_TESTS),
}


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def pack(npm: str, spec: str, folder: Path) -> Path:
    """`npm pack` of one exact version into `folder`; the tarball's path."""
    out = subprocess.run(
        [npm, "pack", spec, "--silent", "--pack-destination", str(folder)],
        check=True,
        capture_output=True,
        text=True,
    )
    return folder / out.stdout.strip().splitlines()[-1]


def vendor(target: Path, packages: Files) -> list[str]:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to vendor browser files (Debian: apt-get install npm)")
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, files in packages.items():
            with tarfile.open(pack(npm, spec, Path(tmp))) as tarball:
                for member, name, integrity in files:
                    extracted = tarball.extractfile(member)
                    if extracted is None:
                        raise SystemExit(f"{spec}: {member} is not a file")
                    data = extracted.read()
                    if integrity is not None and sri(data) != integrity:
                        raise SystemExit(f"{spec}: {member} is {sri(data)}, not the pinned {integrity}")
                    path = target / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    written.append(f"{name} ({len(data):,} bytes) from {spec}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", metavar="SET", help=f"of {', '.join(SETS)} (default: every set)")
    asked = parser.parse_args().sets or list(SETS)
    if unknown := set(asked) - set(SETS):
        parser.error(f"unknown set {', '.join(sorted(unknown))}: choose from {', '.join(SETS)}")
    for name in asked:
        target, packages = SETS[name]
        for line in vendor(target, packages):
            print(f"{name}: {line}")


if __name__ == "__main__":
    main()
