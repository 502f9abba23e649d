"""Benchmarks for one-shot sync against the stand-in server, each against a baseline measured
in the same run. Prints figures and ratios; asserts nothing.

  (a) no-op sync of 5,000 files / 100 MB with a warm cache
      vs. a minimal script that only GETs the listing once        goal: ratio <= 1.5, 0 bytes read
  (b) first upload of 2,000 files of 25 KB, server latency 20 ms
      vs. a sequential loop with a new connection per file         goal: >= 4x faster
  (c) peak RSS of `jatos-sync sync` uploading a 1 GB file           goal: <= 100 MB

The server runs in its own process so that its work (it computes every Adler-32 on each
listing, like JATOS) is not counted in the client's CPU or memory.

Usage: .venv/bin/python benchmarks/bench_oneshot.py [--only a|b|c] [--scale 0.1]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import requests

from jatos_sync.cli import main
from jatos_sync.testing import StandInServer


def _serve(conn: Connection, personality: str) -> None:
    """Child process: a stand-in server driven by simple commands over a pipe."""
    with StandInServer(personality=personality) as server:
        server.add_user("bench")
        token = server.add_token("bench")
        conn.send({"url": server.url, "token": token})
        while True:
            command, arg = conn.recv()
            if command == "stop":
                break
            if command == "study":
                study = server.add_study(str(arg), members=["bench"])
                conn.send(study.id)
            elif command == "latency":
                server.faults.latency_s = float(arg)
                conn.send(None)
            elif command == "uploads":
                conn.send(server.count(kind="upload"))
            elif command == "requests":
                conn.send(len(server.requests))
            elif command == "faults":  # e.g. {"error_rate": 0.3, "drop_rate": 0.1, "seed": 1}
                server.faults.reset()
                for name, value in dict(arg).items():
                    setattr(server.faults, name, value)
                conn.send(None)
            elif command == "kill":
                server.kill()
                conn.send(None)
            elif command == "restart":
                server.restart()
                conn.send(None)
            elif command == "fill":  # (study, folder): its files written on the server's disk
                study_id, source = arg
                shutil.copytree(source, server.assets_dir(study_id), dirs_exist_ok=True)
                conn.send(None)
            elif command == "files":  # path -> (size, Adler-32) of a study's files
                conn.send({p: (len(b), zlib.adler32(b)) for p, b in server.files(arg).items()})


class Server:
    def __init__(self, personality: str = "3.10") -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, personality), daemon=True)
        self._proc.start()
        info = self._conn.recv()
        self.url: str = info["url"]
        self.token: str = info["token"]

    def call(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send(("stop", None))
        self._proc.join(10)


def write_config(root: Path, url: str, folder: Path, study: int, concurrency: int = 4) -> Path:
    config = root / f"config-{study}.yaml"
    config.write_text(
        f"server:\n  url: {url}\n  concurrency: {concurrency}\nstate_dir: {root / 'state'}\n"
        f"mappings:\n  - name: bench\n    folder: {folder}\n    study: {study}\n"
    )
    return config


def make_files(folder: Path, count: int, size: int) -> None:
    past = time.time() - 3600  # old mtimes: the checksum cache trusts them
    block = os.urandom(size)
    for i in range(count):
        path = folder / f"d{i % 50:02}" / f"f{i:05}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(i.to_bytes(4, "big") + block[4:])
        os.utime(path, (past, past))


def run_sync(config: Path, token: str, *args: str) -> tuple[int, float, list[dict[str, Any]]]:
    err = io.StringIO()
    started = time.perf_counter()
    code = main(
        ["-c", str(config), "--log-format", "json", "sync", *args],
        environ={"JATOS_TOKEN": token},
        stdout=io.StringIO(),
        stderr=err,
    )
    elapsed = time.perf_counter() - started
    events = [json.loads(line) for line in err.getvalue().splitlines() if line.startswith("{")]
    return code, elapsed, events


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_noop(root: Path, server: Server, scale: float) -> None:
    count = int(5000 * scale)
    folder = root / "noop"
    make_files(folder, count, 20_000)
    study = server.call("study", "noop")
    config = write_config(root, server.url, folder, study)
    code, first, _ = run_sync(config, server.token)
    print(
        f"(a) initial upload of {count} files / {count * 20_000 / 1e6:.0f} MB: "
        f"{first:.1f} s (exit {code})"
    )
    run_sync(config, server.token)  # warm the cache past the racy window

    url = f"{server.url}/jatos/api/v1/studies/{study}/assets/structure?flatten=true"
    headers = {"Authorization": f"Bearer {server.token}", "Accept": "application/json"}

    def baseline() -> None:
        requests.get(url, headers=headers, timeout=60).raise_for_status()

    # Interleave the two, so that drift of the machine affects both alike.
    results, base_times = [], []
    for _ in range(5):
        results.append(run_sync(config, server.token))
        base_times.append(median_time(baseline, 1))
    ours = statistics.median(r[1] for r in results)
    base = statistics.median(base_times)
    scan = next(e for e in results[-1][2] if e.get("event") == "scan_done")
    uploads = [e for r in results for e in r[2] if e.get("event") == "upload_done"]
    print(
        f"(a) no-op sync, warm cache: {ours:.3f} s; listing GET alone: {base:.3f} s; "
        f"ratio {ours / base:.2f} (goal <= 1.5); file content read: "
        f"{scan['bytes_hashed']} bytes (goal 0); uploads: {len(uploads)}"
    )


def bench_upload(root: Path, server: Server, scale: float) -> None:
    count = int(2000 * scale)
    folder = root / "upload"
    make_files(folder, count, 25_000)
    server.call("latency", 0.02)
    study = server.call("study", "upload")
    code, ours, _ = run_sync(write_config(root, server.url, folder, study), server.token)
    study8 = server.call("study", "upload8")
    _, ours8, _ = run_sync(write_config(root, server.url, folder, study8, 8), server.token)

    naive_study = server.call("study", "naive")
    headers = {"Authorization": f"Bearer {server.token}", "Accept": "application/json"}
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    started = time.perf_counter()
    for path in files:  # like a curl loop: one new connection per file, one at a time
        rel = path.relative_to(folder).as_posix()
        with path.open("rb") as fh:
            requests.post(
                f"{server.url}/jatos/api/v1/studies/{naive_study}/assets/{rel}",
                files={"studyAssetsFile": (path.name, fh)},
                headers={**headers, "Connection": "close"},
                timeout=60,
            ).raise_for_status()
    naive = time.perf_counter() - started
    server.call("latency", 0.0)
    print(
        f"(b) first upload of {count} x 25 KB at 20 ms latency: jatos-sync {ours:.2f} s "
        f"(exit {code}); sequential new-connection loop {naive:.2f} s; "
        f"speed-up {naive / ours:.1f}x (goal >= 4x); with concurrency 8: {ours8:.2f} s, "
        f"{naive / ours8:.1f}x"
    )


# ru_maxrss of a forked child counts the parent's pages until `exec`: fork the measured
# command from this small trampoline, not from the (by then large) benchmark process.
TRAMPOLINE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execve(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss_mb(argv: list[str], env: dict[str, str]) -> tuple[int, float]:
    """Exit code and peak RSS (MB) of the command `argv`."""
    done = subprocess.run(
        [sys.executable, "-c", TRAMPOLINE, *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB


def bench_big_file(root: Path, server: Server, scale: float) -> None:
    size = int(1024**3 * scale)
    folder = root / "big"
    folder.mkdir()
    with (folder / "video.bin").open("wb") as fh:
        block = os.urandom(1 << 20)
        for _ in range(size >> 20):
            fh.write(block)
    study = server.call("study", "big")
    config = write_config(root, server.url, folder, study)
    env = {**os.environ, "JATOS_TOKEN": server.token}
    code, ours = peak_rss_mb([sys.executable, "-m", "jatos_sync", "-c", str(config), "sync"], env)
    _, idle = peak_rss_mb([sys.executable, "-m", "jatos_sync", "--version"], env)
    print(
        f"(c) peak RSS uploading a {size / 1024**3:.2f} GiB file: {ours:.0f} MB (exit {code}; "
        f"goal <= 100 MB); `jatos-sync --version` alone: {idle:.0f} MB; "
        f"RSS / file size: {ours * 2**20 / size:.3f}"
    )


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["a", "b", "c"], action="append")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink for a quick try")
    args = parser.parse_args()
    wanted = args.only or ["a", "b", "c"]
    server = Server()
    try:
        with tempfile.TemporaryDirectory(prefix="jatos-sync-bench-") as tmp:
            root = Path(tmp)
            for key, bench in (("a", bench_noop), ("b", bench_upload), ("c", bench_big_file)):
                if key in wanted:
                    bench(root, server, args.scale)
    finally:
        server.close()


if __name__ == "__main__":
    main_bench()
