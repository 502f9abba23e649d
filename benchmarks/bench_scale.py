"""One `jatos-sync watch` daemon over many mappings whose studies are already in step.

  50 mappings x 5,000 files (250,000 files), the server already holding every file:
    - time from start to ready (systemd's READY: every mapping's first full pass done)
                                                              goal: <= 12 s
    - the daemon's RSS once ready                             goal: <= 150 MB
    - its CPU while idle for --idle-s seconds                 goal: <= 1 %
    - edit -> served latency, p50, for edits spread over the mappings
                                                              goal: <= 0.15 s

The stand-in server runs in its own process (bench_oneshot.Server), the daemon in another,
so CPU and memory are the daemon's own. The studies are filled on the server's disk
directly, then one `jatos-sync sync` records what is in step (as a daemon restarted on a
lab server would find it); that sync's time is printed too.

Usage: .venv/bin/python benchmarks/bench_scale.py [--mappings 50] [--files 5000]
       [--idle-s 30] [--edits 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from bench_oneshot import Server


def make_folder(folder: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    past = time.time() - 3600  # old mtimes: the checksum cache trusts them
    for i in range(count):
        path = folder / f"d{i % 50:02}" / f"f{i:05}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(64 + i % 200))
        os.utime(path, (past, past))


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return cpu, rss


def wait_for_event(log: Path, name: str, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == name:
                return time.monotonic()
        time.sleep(0.05)
    raise SystemExit(f"no {name} within {timeout_s} s; see {log}")


def count_events(log: Path, name: str) -> int:
    return sum(
        1
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("{") and json.loads(line).get("event") == name
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mappings", type=int, default=50)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    server = Server("3.10")
    root = Path(tempfile.mkdtemp(prefix="jatos-sync-bench-scale-"))
    env = {**os.environ, "JATOS_TOKEN": server.token}
    env.pop("JOURNAL_STREAM", None)
    try:
        started = time.monotonic()
        entries = []
        studies: dict[str, tuple[int, Path]] = {}
        for m in range(args.mappings):
            folder = root / f"m{m:02}"
            make_folder(folder, args.files, seed=m)
            study = server.call("study", f"scale {m}")
            server.call("fill", (study, str(folder)))
            studies[f"m{m:02}"] = (study, folder)
            entries.append(f"  - name: m{m:02}\n    folder: {folder}\n    study: {study}\n")
        config = root / "jatos-sync.yaml"
        config.write_text(
            f"server:\n  url: {server.url}\nstate_dir: {root / 'state'}\nmappings:\n"
            + "".join(entries)
        )
        print(
            f"made {args.mappings} x {args.files} files in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        cli = [sys.executable, "-m", "jatos_sync", "-c", str(config)]
        t0 = time.monotonic()
        done = subprocess.run([*cli, "sync", "--json"], env=env, capture_output=True)
        print(
            f"first sync (records what is in step): {time.monotonic() - t0:.1f} s, "
            f"exit {done.returncode}",
            flush=True,
        )
        log = root / "watch.log"
        with log.open("wb") as out:
            t0 = time.monotonic()
            daemon = subprocess.Popen(
                [*cli, "-v", "--log-format", "json", "watch"], env=env, stderr=out
            )
            try:
                ready_s = wait_for_event(log, "watch_ready", 600) - t0
                _cpu, rss = proc_stat(daemon.pid)
                requests_before = count_events(log, "http_request")
                cpu0, _ = proc_stat(daemon.pid)
                time.sleep(args.idle_s)
                cpu1, rss_idle = proc_stat(daemon.pid)
                idle_requests = count_events(log, "http_request") - requests_before
                latencies = edit_latencies(server, studies, args.edits)
            finally:
                daemon.terminate()
                code = daemon.wait(30)
        p50 = statistics.median(latencies)
        print(
            f"watch, {args.mappings} mappings x {args.files} files, server in step:\n"
            f"  ready after {ready_s:.1f} s (goal <= 12 s)\n"
            f"  RSS {rss / 1e6:.0f} MB when ready, {rss_idle / 1e6:.0f} MB after idling "
            "(goal <= 150 MB)\n"
            f"  idle CPU {100 * (cpu1 - cpu0) / args.idle_s:.2f} % over {args.idle_s:.0f} s "
            f"(goal <= 1 %), {idle_requests} requests\n"
            f"  edit -> served p50 {p50:.3f} s, max {max(latencies):.3f} s over "
            f"{len(latencies)} edits (goal p50 <= 0.15 s)\n"
            f"  exit {code} after SIGTERM"
        )
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def edit_latencies(server: Server, studies: dict[str, tuple[int, Path]], edits: int) -> list[float]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {server.token}"
    names = sorted(studies)
    result = []
    for n in range(edits):
        study, folder = studies[names[(n * 7) % len(names)]]
        rel = f"d{n % 50:02}/f{n:05}.txt"
        content = f"edit {n} {time.time()}\n".encode()
        path = folder / rel
        with path.open("wb") as stream:
            stream.write(content)
        closed = time.monotonic()
        url = f"{server.url}/jatos/api/v1/studies/{study}/assets/{rel}"
        while True:
            answer = session.get(url)
            if answer.status_code == 200 and answer.content == content:
                result.append(time.monotonic() - closed)
                break
            if time.monotonic() - closed > 10:
                result.append(10.0)
                break
            time.sleep(0.002)
        time.sleep(0.3)
    return result


if __name__ == "__main__":
    sys.exit(main())
