"""Benchmarks for the study as code against the stand-in server, each against a baseline
measured in the same run. Prints figures and ratios; asserts nothing.

  (a) creating a study from a folder of 2,000 files of 25 KB (server latency 20 ms): one
      `sync` with `create: true` (one archive import, then a listing)
      vs. a first `sync` of the same folder into an existing empty study (file by file)
  (b) a no-op `sync` of that folder with a definition of 5 components
      vs. the same mapping without a definition                    goal: one request more

Usage: .venv/bin/python benchmarks/bench_study.py [--scale 0.1] [--personality 3.9]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from jatos_sync.cli import main
from jatos_sync.testing import StandInServer


def make_folder(root: Path, files: int, size: int) -> Path:
    folder = root / "experiment"
    for n in range(files):
        path = folder / f"stimuli/{n % 20:02d}/s{n:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    for n in range(5):
        (folder / f"page{n}.html").write_text(f"<p>page {n}</p>")
    return folder


def write_config(
    path: Path, server: StandInServer, folder: Path, study: str, *, definition: bool, state: Path
) -> None:
    mapping: dict[str, object] = {"name": "exp", "folder": str(folder), "study": study}
    if definition:
        mapping["create"] = True
        mapping["definition"] = {
            "title": "Benchmark study",
            "input": {"trials": 120},
            "components": [{"title": f"Page {n}", "html": f"page{n}.html"} for n in range(5)],
        }
    document = {
        "server": {"url": server.url, "retries": 1},
        "state_dir": str(state),
        "mappings": [mapping],
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")


def run_sync(config: Path, env: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    code = main(
        ["-c", str(config), "-q", "sync"], environ=env, stdout=io.StringIO(), stderr=io.StringIO()
    )
    return code, time.perf_counter() - started


def main_bench() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--personality", default="3.10")
    args = parser.parse_args()
    files = max(10, int(2000 * args.scale))
    with (
        tempfile.TemporaryDirectory() as tmp,
        StandInServer(personality=args.personality, data_dir=Path(tmp) / "server") as server,
    ):
        root = Path(tmp)
        server.add_user("bench")
        env = {"JATOS_TOKEN": server.add_token("bench")}
        folder = make_folder(root, files, 25_000)
        server.faults.latency_s = 0.02

        created = str(uuid.uuid4())
        config = root / "created.yaml"
        write_config(config, server, folder, created, definition=True, state=root / "s1")
        server.clear_requests()
        code, create_s = run_sync(config, env)
        create_requests = len(server.requests)
        assert code == 0, code

        empty = server.add_study("Baseline", members=["bench"])
        baseline = root / "baseline.yaml"
        write_config(baseline, server, folder, str(empty.id), definition=False, state=root / "s2")
        server.clear_requests()
        code, upload_s = run_sync(baseline, env)
        upload_requests = len(server.requests)
        assert code == 0, code
        print(f"(a) {files + 5} files of 25 KB, latency 20 ms, JATOS {args.personality}")
        print(f"    create: true, one archive: {create_s:6.2f} s, {create_requests} requests")
        print(f"    first sync, file by file:  {upload_s:6.2f} s, {upload_requests} requests")
        print(f"    ratio: {upload_s / create_s:.1f}x faster")

        server.faults.latency_s = 0.0
        for label, path in (("with a definition", config), ("without", baseline)):
            run_sync(path, env)  # warm the checksum cache
            server.clear_requests()
            times = []
            for _ in range(5):
                times.append(run_sync(path, env)[1])
            print(
                f"(b) no-op sync {label:18}: {min(times):5.2f} s, "
                f"{len(server.requests) // 5} requests"
            )


if __name__ == "__main__":
    main_bench()
