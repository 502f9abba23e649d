"""Benchmark: a generated `.jatosignore` of 10,000 lines. Prints figures; asserts nothing.

RE2 refuses to put 10,000 patterns into one automaton. Two ways out were measured:

  (a) pathspec's "simple" backend: every pattern is a Python regex, tried in turn;
  (b) what ignore.py does: the patterns split over several RE2 automata (CHUNK_PATTERNS
      each), answers combined in gitignore order.

For each, with plain paths, globs and a mix of pattern kinds: the time to build the rules
from the file (as each full pass does; "again": the next time, with the lines parsed
already) and the time to match the paths a scan of 5,500 files asks about (each file once;
the directories above them are asked about too).

Usage: .venv/bin/python benchmarks/bench_ignore.py [--lines 10000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from pathspec import GitIgnoreSpec

from jatos_sync.ignore import IgnoreRules
from jatos_sync.model import RelPath


def generated(kind: str, count: int) -> list[str]:
    rng = random.Random(1)
    lines = []
    for i in range(count):
        if kind == "plain paths":
            lines.append(f"build/chunk{i}/asset-{i:05}.js")
        elif kind == "globs":
            lines.append(f"stimuli/set{i % 97}/*.{('png', 'wav', 'jpg')[i % 3]}{i}")
        else:
            lines.append(
                rng.choice([f"/gen/{i}.bin", f"*.tmp{i}", f"dir{i}/", f"!keep{i}.js", f"a/**/b{i}"])
            )
    return lines


def scanned_paths() -> list[RelPath]:
    paths = [RelPath(f"js/mod{i % 50}/file{i}.js") for i in range(5000)]
    paths += [RelPath(f"build/chunk{i}/asset-{i:05}.js") for i in range(0, 10000, 20)]
    return paths


def measure(lines: list[str], paths: list[RelPath], *, simple: bool) -> tuple[float, float, float]:
    """(first build, build again, matching) in seconds."""
    started = time.perf_counter()
    again = 0.0
    if simple:
        spec = GitIgnoreSpec.from_lines(lines, backend="simple")
        built = time.perf_counter() - started
        started = time.perf_counter()
        for path in paths:
            for parent in reversed(path.parents[:-1]):
                spec.match_file(f"{parent}/")
            spec.match_file(str(path))
    else:
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, ".jatosignore").write_text("\n".join(lines) + "\n", encoding="utf-8")
            started = time.perf_counter()
            rules = IgnoreRules.for_folder(Path(folder))
            built = time.perf_counter() - started
            started = time.perf_counter()
            IgnoreRules.for_folder(Path(folder))  # the next full pass: lines parsed already
            again = time.perf_counter() - started
        started = time.perf_counter()
        for path in paths:
            rules.is_ignored(path)
    return built, again, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000)
    args = parser.parse_args()
    paths = scanned_paths()
    print(f"{args.lines} ignore lines; {len(paths)} paths matched (with their directories)")
    for kind in ("plain paths", "globs", "mixed"):
        lines = generated(kind, args.lines)
        for label, simple in (("(a) simple backend", True), ("(b) split RE2", False)):
            built, again, matched = measure(lines, paths, simple=simple)
            rebuilt = f"again {again:5.2f} s" if again else " " * 13
            print(
                f"  {kind:12} {label:19} build {built:5.2f} s {rebuilt}  match {matched:6.2f} s"
                f"  ({matched / len(paths) * 1e6:6.0f} µs per path)"
            )


if __name__ == "__main__":
    main()
