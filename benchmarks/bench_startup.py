"""Start-up benchmarks: whole processes, each against a baseline measured in the same run.
Prints figures and ratios; asserts nothing.

  (1) `jatos-sync --version` and `jatos-sync --help`, whole process
      vs. `python -c "import requests"`                          goal: ratio <= 0.5
  (2) no-op `jatos-sync sync` of 5,000 files / 100 MB (warm cache), whole process
      vs. a bare Python script that GETs the listing once         goal: ratio <= 1.2

Each command runs `--repeat` times, interleaved with its baseline so that drift of the
machine affects both alike; the medians are compared. Peak RSS comes from the same runs.
`python -X importtime -m jatos_sync --version` says where the time goes.

Usage: .venv/bin/python benchmarks/bench_startup.py [--only 1|2] [--repeat 15] [--scale 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_oneshot import Server, make_files, peak_rss_mb, write_config

PY = sys.executable

BARE_LISTING = """
import os, sys, requests
url, token = sys.argv[1], os.environ["JATOS_TOKEN"]
headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
requests.get(url, headers=headers, timeout=60).raise_for_status()
"""


def measured_env() -> dict[str, str]:
    """The environment of the measured processes: as a user's, with bytecode caches (a
    PYTHONDONTWRITEBYTECODE=1 left in a shell would recompile every edited module on every
    start and measure the compiler)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall time (s), peak RSS (MB) and exit code of one whole process."""
    started = time.perf_counter()
    code, rss = peak_rss_mb(argv, env)
    return time.perf_counter() - started, rss, code


def compare(
    label: str,
    ours: list[str],
    base_label: str,
    base: list[str],
    env: dict[str, str],
    repeat: int,
    goal: float,
) -> None:
    mine, theirs = [], []
    for _ in range(repeat):
        mine.append(timed(ours, env))
        theirs.append(timed(base, env))
    codes = {m[2] for m in mine}
    t_ours = statistics.median(m[0] for m in mine)
    t_base = statistics.median(b[0] for b in theirs)
    rss = statistics.median(m[1] for m in mine)
    print(
        f"{label}: {t_ours:.3f} s, {rss:.0f} MB (exit {sorted(codes)}); {base_label}: "
        f"{t_base:.3f} s; ratio {t_ours / t_base:.2f} (goal <= {goal})"
    )


def bench_cli(repeat: int) -> None:
    env = measured_env()
    timed([PY, "-m", "jatos_sync", "--version"], env)  # writes the bytecode caches
    baseline = [PY, "-c", "import requests"]
    for flag in ("--version", "--help"):
        compare(
            f"(1) jatos-sync {flag}",
            [PY, "-m", "jatos_sync", flag],
            'python -c "import requests"',
            baseline,
            env,
            repeat,
            0.5,
        )
    empty = statistics.median(timed([PY, "-c", "pass"], env)[0] for _ in range(repeat))
    print(f"    for reference: `python -c pass` {empty:.3f} s")


def bench_noop_sync(root: Path, server: Server, repeat: int, scale: float) -> None:
    count = int(5000 * scale)
    folder = root / "noop"
    make_files(folder, count, 20_000)
    study = server.call("study", "noop")
    config = write_config(root, server.url, folder, study)
    env = {**measured_env(), "JATOS_TOKEN": server.token}
    ours = [PY, "-m", "jatos_sync", "-q", "-c", str(config), "sync"]
    for _ in range(2):  # the first sync uploads; the second warms the cache past racy mtimes
        timed(ours, env)
    listing = f"{server.url}/jatos/api/v1/studies/{study}/assets/structure?flatten=true"
    compare(
        f"(2) no-op sync of {count} files / {count * 20_000 / 1e6:.0f} MB, whole process",
        ours,
        "bare script GETting the listing",
        [PY, "-c", BARE_LISTING, listing],
        env,
        repeat,
        1.2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=["1", "2"], action="append")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink (2) for a quick try")
    args = parser.parse_args()
    wanted = args.only or ["1", "2"]
    if "1" in wanted:
        bench_cli(args.repeat)
    if "2" in wanted:
        server = Server()
        try:
            with tempfile.TemporaryDirectory(prefix="jatos-sync-bench-startup-") as tmp:
                bench_noop_sync(Path(tmp), server, args.repeat, args.scale)
        finally:
            server.close()


if __name__ == "__main__":
    main()
