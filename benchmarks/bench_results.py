"""Benchmarks for `jatos-sync results` against the stand-in server, each against a baseline
measured in the same run. Prints figures and ratios; asserts nothing.

  (a) first mirror of 2,000 finished results of 10 KB each; then a pass with nothing new
      vs. the metadata request alone (GET, nothing parsed)   goal: 1 request, ratio <= 1.2
  (b) peak RSS of `jatos-sync results` mirroring a result that holds a 500 MB file
                                                              goal: <= 100 MB

The server runs in its own process so that its work (building the metadata and the zips)
is not counted in the client's CPU or memory.

Usage: .venv/bin/python benchmarks/bench_results.py [--only a|b] [--scale 0.1]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_oneshot import median_time, peak_rss_mb

from jatos_sync.cli import main
from jatos_sync.testing import StandInServer


def _serve(conn: Connection) -> None:
    """Child process: a stand-in server driven by simple commands over a pipe."""
    with StandInServer(personality="3.10") as server:
        server.add_user("bench")
        token = server.add_token("bench")
        conn.send({"url": server.url, "token": token})
        while True:
            command, arg = conn.recv()
            if command == "stop":
                break
            if command == "study":  # a study with one component
                study = server.add_study(str(arg), members=["bench"])
                server.add_component(study, "Task", html_file_path="task.html")
                conn.send(study.id)
            elif command == "runs":  # (study, count, bytes): finished runs with that much data
                study_id, count, size = arg
                for i in range(count):
                    run = server.start_run(study_id)
                    server.start_component(run)
                    server.put_data(run, f"{i:08d}" + "x" * (size - 8))
                    server.finish_run(run)
                conn.send(count)
            elif command == "big":  # (study, bytes): a run whose component holds one big file
                study_id, size = arg
                run = server.start_run(study_id)
                component = server.start_component(run)
                server.put_data(run, "big")
                target = server.uploads_root / f"study_result_{run.id}"
                target = target / f"comp-result_{component.id}" / "video.bin"
                target.parent.mkdir(parents=True, exist_ok=True)
                block = os.urandom(1 << 20)
                with target.open("wb") as fh:  # as the participant's upload would leave it
                    for _ in range(size >> 20):
                        fh.write(block)
                server.finish_run(run)
                conn.send(None)
            elif command == "requests":
                conn.send([(r.method, r.path) for r in server.requests])
            elif command == "clear":
                server.clear_requests()
                conn.send(None)


class Server:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()
        info = self._conn.recv()
        self.url: str = info["url"]
        self.token: str = info["token"]

    def call(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send(("stop", None))
        self._proc.join(30)


def write_config(root: Path, url: str, study: int) -> Path:
    (root / f"folder-{study}").mkdir()
    config = root / f"config-{study}.yaml"
    config.write_text(
        f"server:\n  url: {url}\n  timeout: 10m\nstate_dir: {root / 'state'}\n"
        f"mappings:\n  - name: bench\n    folder: {root / f'folder-{study}'}\n"
        f"    study: {study}\n    results:\n      folder: {root / f'results-{study}'}\n"
    )
    return config


def run_results(config: Path, token: str) -> tuple[int, float, dict[str, Any]]:
    out = io.StringIO()
    started = time.perf_counter()
    code = main(
        ["-c", str(config), "-q", "results", "--json"],
        environ={"JATOS_TOKEN": token},
        stdout=out,
        stderr=io.StringIO(),
    )
    elapsed = time.perf_counter() - started
    return code, elapsed, json.loads(out.getvalue())["mappings"][0]


def bench_mirror(root: Path, server: Server, scale: float) -> None:
    count = max(1, int(2000 * scale))
    study = server.call("study", "mirror")
    server.call("runs", (study, count, 10_000))
    config = write_config(root, server.url, study)
    server.call("clear")
    code, first, mapping = run_results(config, server.token)
    sent = server.call("requests")
    print(
        f"(a) first mirror of {count} results x 10 KB: {first:.2f} s (exit {code}); "
        f"{len(mapping['new'])} new; {len(sent)} requests "
        f"({sum(p.endswith('/results') for _, p in sent)} zips)"
    )

    url = f"{server.url}/jatos/api/v1/results/metadata?studyId={study}"
    headers = {"Authorization": f"Bearer {server.token}", "Accept": "application/json"}

    def baseline() -> None:
        requests.get(url, headers=headers, timeout=600).raise_for_status()

    # Interleave the two, so that drift of the machine affects both alike.
    ours, base, requests_per_pass = [], [], []
    for _ in range(15):
        server.call("clear")
        code, elapsed, mapping = run_results(config, server.token)
        requests_per_pass.append(len(server.call("requests")))
        ours.append(elapsed)
        base.append(median_time(baseline, 1))
    print(
        f"(a) pass with nothing new: {statistics.median(ours):.3f} s (exit {code}, "
        f"{mapping['unchanged']} unchanged, requests per pass: {sorted(set(requests_per_pass))}); "
        f"metadata GET alone: {statistics.median(base):.3f} s; ratio "
        f"{statistics.median(ours) / statistics.median(base):.2f} (goal <= 1.2)"
    )


def bench_big_file(root: Path, server: Server, scale: float) -> None:
    size = max(1 << 20, int(500 * 2**20 * scale) >> 20 << 20)
    study = server.call("study", "big")
    server.call("big", (study, size))
    config = write_config(root, server.url, study)
    env = {**os.environ, "JATOS_TOKEN": server.token}
    started = time.perf_counter()
    code, ours = peak_rss_mb(
        [sys.executable, "-m", "jatos_sync", "-c", str(config), "results"], env
    )
    elapsed = time.perf_counter() - started
    _, idle = peak_rss_mb([sys.executable, "-m", "jatos_sync", "--version"], env)
    written = sum(p.stat().st_size for p in (root / f"results-{study}").rglob("video.bin"))
    print(
        f"(b) peak RSS mirroring a result with a {size / 2**20:.0f} MB file: {ours:.0f} MB "
        f"(exit {code}, {elapsed:.1f} s, {written / 2**20:.0f} MB written; goal <= 100 MB); "
        f"`jatos-sync --version` alone: {idle:.0f} MB"
    )


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=["a", "b"], action="append")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink for a quick try")
    args = parser.parse_args()
    wanted = args.only or ["a", "b"]
    server = Server()
    try:
        with tempfile.TemporaryDirectory(prefix="jatos-sync-bench-results-") as tmp:
            root = Path(tmp)
            for key, bench in (("a", bench_mirror), ("b", bench_big_file)):
                if key in wanted:
                    bench(root, server, args.scale)
    finally:
        server.close()


if __name__ == "__main__":
    main_bench()
