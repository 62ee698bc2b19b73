"""Paired benchmark: one bench run on two checkouts of Maillage alternately, its figures compared in one table.

Run `python -m bench.paired --before DIR --after DIR [--runs 3] BENCH [ARGS…]`, BENCH one of gateway, events,
matching (ARGS go to it, e.g. `matching --sizes 100000 --no-e2e`). Prints a table; it is not a test.

Each run is `python -m bench.BENCH ARGS` in the checkout's directory with it first on PYTHONPATH (the same
virtual environment, so the same libraries), before and after alternately, so that a machine's drift (heat, other
load) falls on both sides alike. The figures are read back from the bench's own table; the table here gives each
figure's median over the runs of each side, the spread (min-max) and the change of the medians. `--outputs DIR`
keeps every run's output, and `--parse DIR` only reads outputs kept earlier (`<side>-<run>.txt`).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

NUMBER = r"(-?[\d,]+(?:\.\d+)?)"
# Per bench: (figure's name, regex whose groups are the figure's values, the names of those groups). Lower is better
# for times; "req/s" rows are higher-is-better, said in the name.
FIGURES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "gateway": [
        (
            "(a) REST",
            rf"^\(a\) services' REST APIs directly.*?\s{NUMBER}\s+{NUMBER}\s+{NUMBER}$",
            ("p50", "p99", "req/s"),
        ),
        ("(b) GraphQL", rf"^\(b\) through the gateway.*?\s{NUMBER}\s+{NUMBER}\s+{NUMBER}$", ("p50", "p99", "req/s")),
        ("(c) schema", rf"^\(c\) gateway schema.*?\s{NUMBER}\s+{NUMBER}\s+{NUMBER}$", ("p50", "p99", "req/s")),
        (
            "publishNeed→matchFound",
            rf"^\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$",
            ("delivered", "missed", "p50", "p99", "max"),
        ),
        (
            "  its mutation's answer",
            rf"^of which the mutation's answer: p50 {NUMBER} ms, p99 {NUMBER} ms",
            ("p50", "p99"),
        ),
    ],
    "events": [
        (
            "burst",
            rf"^all answered after \(s\)\s+{NUMBER}\s+slowest {NUMBER} s, p50 {NUMBER} ms",
            ("wall s", "last s", "p50"),
        ),
        ("steady", rf"^\s*{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+target p99 < 100 ms", ("p50", "p99", "max")),
        ("search c=1", rf"^\s+1\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", ("req/s", "p50", "p99", "hits")),
        ("search c=8", rf"^\s+8\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", ("req/s", "p50", "p99", "hits")),
    ],
    "matching": [
        (
            "replica",
            rf"^\s*([\d,]+)\s+(?:(on|off)\s+)?{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s",
            ("actors", "doors", "load s", "SQL p50", "SQL p99", "match p50", "match p99"),
        ),
    ],
}
SKIPPED = {"delivered", "missed", "load s", "hits", "wall s", "last s"}  # counts and set-up, not speed
# Groups that name a row rather than measure it: a table with one row per replica size (and doors on or off) gives
# each row's figures under its own name, "replica 1,000,000 on: match p99".
ROW_KEYS = ("actors", "doors")


def figures(bench: str, text: str) -> dict[str, float]:
    """The figures of one run's output, as 'row: value name' → value."""
    found: dict[str, float] = {}
    for name, pattern, groups in FIGURES[bench]:
        matches = list(re.finditer(pattern, text, re.MULTILINE))
        keyed = any(group in ROW_KEYS for group in groups)
        for match in matches if keyed else matches[:1]:
            values = dict(zip(groups, match.groups(), strict=True))
            row = " ".join([name, *(values[key] for key in ROW_KEYS if values.get(key))])
            for group, value in values.items():
                if group not in SKIPPED and group not in ROW_KEYS:
                    found[f"{row}: {group}"] = float(value.replace(",", ""))
    return found


def run_once(checkout: Path, bench: str, args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"bench.{bench} failed in {checkout} ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def table(bench: str, runs: dict[str, list[dict[str, float]]]) -> None:
    names = list(dict.fromkeys(name for side in runs.values() for run in side for name in run))
    print(f"\nbench.{bench}: median of {len(runs['before'])} runs per side (min-max), change of the medians")
    print(f"{'figure':<42} {'before':>22} {'after':>22} {'change':>8}")
    for name in names:
        cells = []
        medians: list[float | None] = []
        for side in ("before", "after"):
            values = [run[name] for run in runs[side] if name in run]
            if not values:
                cells.append(f"{'-':>22}")
                medians.append(None)
                continue
            median = statistics.median(values)
            medians.append(median)
            cells.append(f"{median:>8.1f} ({min(values):.1f}-{max(values):.1f})".rjust(22))
        before, after = medians
        change = f"{(after - before) / before * 100:+.1f} %" if before and after is not None else ""
        print(f"{name:<42} {cells[0]} {cells[1]} {change:>8}")
    print("ms unless named; req/s higher is better, every other figure lower is better")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the checkout measured first in each pair")
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--outputs", type=Path, help="keep each run's output there")
    parser.add_argument("--parse", type=Path, help="only read the outputs kept there earlier")
    parser.add_argument("bench", choices=sorted(FIGURES))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for index in range(1, options.runs + 1):
        for side in ("before", "after"):
            if options.parse:
                text = (options.parse / f"{options.bench}-{side}-{index}.txt").read_text()
            else:
                text = run_once(getattr(options, side).resolve(), options.bench, options.args)
                if options.outputs:
                    options.outputs.mkdir(parents=True, exist_ok=True)
                    (options.outputs / f"{options.bench}-{side}-{index}.txt").write_text(text)
            runs[side].append(figures(options.bench, text))
    table(options.bench, runs)


if __name__ == "__main__":
    main()
