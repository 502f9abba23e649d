"""Soak test (not run by CI): a watching daemon under random edits, renames, deletions,
bursts and server faults for a long time, against the stand-in server.

At the end it prints whether the server equals the folder, how many operations ran, and the
daemon's RSS, open file descriptors and threads at the start and at the end.

Usage: .venv/bin/python benchmarks/soak.py [--minutes 30] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_oneshot import Server

from jatos_sync.ignore import IgnoreRules
from jatos_sync.model import RelPath


def proc_figures(pid: int) -> tuple[float, int, int]:
    """RSS in MB, open file descriptors, threads of a running process (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_mb = int(fields["VmRSS"].split()[0]) / 1024
    return rss_mb, len(os.listdir(f"/proc/{pid}/fd")), int(fields["Threads"])


def local_files(folder: Path) -> dict[str, tuple[int, int]]:
    rules = IgnoreRules.for_folder(folder)
    result = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not rules.is_ignored(RelPath(rel)):
            data = path.read_bytes()
            if data:  # empty files are skipped by design
                result[rel] = (len(data), zlib.adler32(data))
    return result


class Workload:
    """Random file operations of the kinds researchers and build tools cause."""

    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.folder, self.rng, self.count = folder, rng, 0

    def files(self) -> list[Path]:
        return [p for p in self.folder.rglob("*") if p.is_file()]

    def dirs(self) -> list[Path]:
        return [p for p in self.folder.rglob("*") if p.is_dir()]

    def content(self) -> bytes:
        return os.urandom(self.rng.randint(1, 20_000))

    def step(self) -> None:
        op = self.rng.choice(
            ["edit", "edit", "edit", "create", "delete", "rename", "burst", "rmtree", "mvdir"]
        )
        files, dirs = self.files(), self.dirs()
        if op == "edit" and files:
            self.rng.choice(files).write_bytes(self.content())
        elif op == "create" or not files:
            parent = self.rng.choice([self.folder, *dirs])
            (parent / f"n{self.rng.randrange(10**6)}.js").write_bytes(self.content())
        elif op == "delete":
            self.rng.choice(files).unlink()
        elif op == "rename":
            src = self.rng.choice(files)
            src.rename(src.with_name(f"r{self.rng.randrange(10**6)}{src.suffix}"))
        elif op == "burst":  # a build writing many files at once
            target = self.folder / f"build{self.rng.randrange(5)}"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for i in range(self.rng.randint(5, 30)):
                (target / f"chunk-{i}.js").write_bytes(self.content())
        elif op == "rmtree" and dirs:
            shutil.rmtree(self.rng.choice(dirs), ignore_errors=True)
        elif op == "mvdir" and dirs:
            src = self.rng.choice(dirs)
            if src.exists():
                src.rename(src.with_name(f"moved{self.rng.randrange(10**6)}"))
        self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    server = Server()
    with tempfile.TemporaryDirectory(prefix="jatos-sync-soak-") as tmp:
        root = Path(tmp)
        folder = root / "experiment"
        for i in range(200):
            path = folder / f"d{i % 10}" / f"f{i}.js"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(rng.randint(1, 20_000)))
        study = server.call("study", "soak")
        config = root / "jatos-sync.yaml"
        # Deletion limits off: the workload deletes whole folders on purpose.
        config.write_text(
            f"server:\n  url: {server.url}\n  retries: 2\n  timeout: 10\n"
            f"state_dir: {root / 'state'}\nmappings:\n  - name: soak\n"
            f"    folder: {folder}\n    study: {study}\n"
            f"    max_delete: 100000\n    max_delete_percent: 100\n"
        )
        env = {**os.environ, "JATOS_TOKEN": server.token}
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jatos_sync",
                "-c",
                str(config),
                "--log-format",
                "json",
                "watch",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(root / "daemon.log").open("w"),
        )
        try:
            deadline = time.monotonic() + 60
            while server.call("files", study) != local_files(folder):
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise SystemExit("the initial sync did not finish")
                time.sleep(0.5)
            start = proc_figures(daemon.pid)
            work = Workload(folder, rng)
            end_at = time.monotonic() + args.minutes * 60
            next_fault = time.monotonic() + 30
            faults = 0
            while time.monotonic() < end_at:
                work.step()
                time.sleep(rng.uniform(0.02, 0.6))
                if time.monotonic() > next_fault:
                    faults += 1
                    kind = rng.choice(["errors", "drops", "latency", "restart"])
                    if kind == "restart":
                        server.call("kill")
                        time.sleep(rng.uniform(1, 8))
                        server.call("restart")
                    else:
                        server.call(
                            "faults",
                            {
                                "errors": {"error_rate": 0.3, "seed": rng.randrange(10**6)},
                                "drops": {"drop_rate": 0.1, "seed": rng.randrange(10**6)},
                                "latency": {"latency_s": 0.5},
                            }[kind],
                        )
                        for _ in range(rng.randint(5, 30)):
                            work.step()
                            time.sleep(rng.uniform(0.02, 0.6))
                        server.call("faults", {})
                    next_fault = time.monotonic() + rng.uniform(20, 60)
            # Quiet: everything must arrive (paused mappings retry with capped backoff).
            deadline = time.monotonic() + 360
            equal = False
            while time.monotonic() < deadline:
                if server.call("files", study) == local_files(folder):
                    equal = True
                    break
                time.sleep(1)
            end = proc_figures(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
        server.close()
        print(f"server == folder: {'yes' if equal else 'no'}")
        print(f"operations: {work.count} (with {faults} fault phases) in {args.minutes:g} min")
        print(f"RSS: {start[0]:.1f} MB at start, {end[0]:.1f} MB at end")
        print(f"open file descriptors: {start[1]} at start, {end[1]} at end")
        print(f"threads: {start[2]} at start, {end[2]} at end")
        print(f"daemon exit code after SIGTERM: {code}")


if __name__ == "__main__":
    main()
