"""Vendor GraphiQL's browser files into gateway/static/graphiql/ from npm: python deploy/vendor_graphiql.py

The gateway serves GraphiQL from these files only, so an admin's browser runs no third-party script next to a
bearer token and the page works offline. The versions are those strawberry's own GraphiQL page names, and each
file must match the Subresource Integrity hash that page gives it (the same hashes are in gateway/graphiql.html).
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
TARGET = ROOT / "gateway" / "static" / "graphiql"

# npm package@version -> (file inside its tarball, file written under TARGET, SRI hash or None for a licence)
FILES: dict[str, list[tuple[str, str, str | None]]] = {
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


def vendor(target: Path) -> list[str]:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to vendor GraphiQL (Debian: apt-get install npm)")
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, files in FILES.items():
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
    parser.add_argument("--target", type=Path, default=TARGET, help="folder to write (default: %(default)s)")
    for line in vendor(parser.parse_args().target):
        print(line)


if __name__ == "__main__":
    main()
