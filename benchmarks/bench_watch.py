"""Benchmarks for `jatos-sync watch` against the stand-in server. Prints figures; asserts
nothing.

  (1) edit-to-server latency, daemon with DEFAULT settings: single-file saves about half a
      second apart, each done as a plain write+close, a vim save and a JetBrains safe save;
      latency from the end of the save to the stand-in serving the new content (polled with
      a GET download of that one file, cheaper than a listing: JATOS reads every file to
      answer a listing)                  goal: p50 <= 0.1 s, p95 <= 0.3 s, one upload per
                                         save, no temp file on the server
  (2) a daemon idle for 60 s with 10,000 files watched        goal: CPU <= 1 %, no HTTP
                                                              request, RSS <= 80 MB

The stand-in server runs in its own process (bench_oneshot.Server), and so does the daemon,
so that CPU, memory and requests are the daemon's own. Requests are counted from the
daemon's own debug log (one `http_request` line per request).

Usage: .venv/bin/python benchmarks/bench_watch.py [--only 1|2] [--edits 200] [--idle-s 60]
       [--files 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import requests
from bench_oneshot import Server


class Daemon:
    """`jatos-sync watch` in a child process, logging JSON lines to a file."""

    def __init__(self, root: Path, config: Path, token: str) -> None:
        self.log_path = root / f"{config.stem}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        # -v: debug logging, so that every HTTP request leaves a line to count.
        argv = ["-m", "jatos_sync", "-c", str(config), "-v", "--log-format", "json", "watch"]
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            env={**os.environ, "JATOS_TOKEN": token},
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def events(self, start: int = 0) -> list[dict[str, Any]]:
        lines = self.log_path.read_bytes()[start:].splitlines()
        return [json.loads(line) for line in lines if line.startswith(b"{")]

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def wait_for(self, event: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(e.get("event") == event for e in self.events()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"daemon: no {event} (see {self.log_path})")
            time.sleep(0.1)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def memory_mb(self) -> tuple[float, float]:
        """(current RSS, peak RSS) in MB."""
        values = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(30)
        self._log.close()
        return code


def write_config(root: Path, name: str, url: str, folder: Path, study: int) -> Path:
    config = root / f"{name}.yaml"  # no watch: section — the defaults are measured
    config.write_text(
        f"server:\n  url: {url}\nstate_dir: {root / ('state-' + name)}\n"
        f"mappings:\n  - name: {name}\n    folder: {folder}\n    study: {study}\n"
    )
    return config


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def plain_save(path: Path, content: bytes) -> None:
    """open, write, close: most editors' in-place save, `cp`, a build tool."""
    with path.open("wb") as fh:
        fh.write(content)


def vim_save(path: Path, content: bytes) -> None:
    """vim with 'nobackupcopy': swap file, the '4913' probe, original renamed to a backup,
    a new file written, the backup removed."""
    swap, probe, backup = (
        path.with_name(n) for n in (f".{path.name}.swp", "4913", path.name + "~")
    )
    swap.write_bytes(b"b0VIM swap")
    probe.write_bytes(b"")
    probe.unlink()
    os.rename(path, backup)
    path.write_bytes(content)
    backup.unlink()
    swap.unlink()


def jetbrains_save(path: Path, content: bytes) -> None:
    """JetBrains 'safe write': new content in a temp file, original moved aside, temp file
    renamed into place, the old one removed."""
    tmp, old = (
        path.with_name(path.name + "___jb_tmp___"),
        path.with_name(path.name + "___jb_old___"),
    )
    tmp.write_bytes(content)
    os.rename(path, old)
    os.rename(tmp, path)
    old.unlink()


SAVES = {
    "plain write+close": plain_save,
    "vim save": vim_save,
    "JetBrains safe save": jetbrains_save,
}


def bench_latency(root: Path, server: Server, edits: int) -> None:
    folder = root / "latency"
    folder.mkdir()
    names = [f"trial-{i}.js" for i in range(5)]
    for name in names:
        (folder / name).write_text("// initial\n")
    study = server.call("study", "latency")
    daemon = Daemon(root, write_config(root, "latency", server.url, folder, study), server.token)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {server.token}"
    assets = f"{server.url}/jatos/api/v1/studies/{study}/assets"
    try:
        daemon.wait_for("watch_ready", 60)
        time.sleep(1.0)
        for label, save in SAVES.items():
            before_log, before_uploads = daemon.log_size(), server.call("uploads")
            latencies: list[float] = []
            for i in range(edits):
                name = names[i % len(names)]
                content = f"// {label} {i}\nconsole.log({i});\n".encode()
                save(folder / name, content)
                saved = time.monotonic()
                while session.get(f"{assets}/{name}", timeout=10).content != content:
                    time.sleep(0.002)
                latencies.append(time.monotonic() - saved)
                time.sleep(max(0.0, 0.5 - (time.monotonic() - saved)))
            time.sleep(1.5)  # let deletions of temp files (none should reach the server) settle
            requests_seen = sum(
                1 for e in daemon.events(before_log) if e.get("event") == "http_request"
            )
            uploads = server.call("uploads") - before_uploads
            listing = session.get(f"{assets}/structure?flatten=true", timeout=10).json()
            served = sorted(f["path"] for f in listing["data"] if f["type"] == "file")
            strays = [p for p in served if p not in names]
            print(
                f"(1) {label}, {edits} edits: p50 {statistics.median(latencies):.3f} s, "
                f"p95 {percentile(latencies, 0.95):.3f} s, max {max(latencies):.3f} s "
                f"(goals: p50 <= 0.1 s, p95 <= 0.3 s); requests per save "
                f"{requests_seen / edits:.2f}, uploads per save {uploads / edits:.2f} (goal 1); "
                f"stray files on the server: {strays or 'none'}"
            )
    finally:
        code = daemon.stop()
    print(
        f"    daemon exit {code}; latency from the end of the save to the stand-in serving the "
        "new content, polled with a GET download every 2 ms"
    )
    print(
        "    for comparison: lsyncd batches changes for 15 s by default; editor "
        "upload-on-save plugins debounce about 0.55 s before they even start the upload"
    )


def bench_idle(root: Path, server: Server, files: int, idle_s: float) -> None:
    folder = root / "idle"
    block = os.urandom(200)
    for i in range(files):
        path = folder / f"d{i % 100:02}" / f"f{i:05}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(i.to_bytes(4, "big") + block)
    study = server.call("study", "idle")
    daemon = Daemon(root, write_config(root, "idle", server.url, folder, study), server.token)
    try:
        started = time.monotonic()
        daemon.wait_for("watch_ready", 600)
        first_pass = time.monotonic() - started
        time.sleep(5.0)  # let the first pass's after-effects (GC, state write) settle
        log_start, cpu_start, wall_start = daemon.log_size(), daemon.cpu_s(), time.monotonic()
        time.sleep(idle_s)
        cpu = daemon.cpu_s() - cpu_start
        wall = time.monotonic() - wall_start
        requests_seen = sum(1 for e in daemon.events(log_start) if e.get("event") == "http_request")
        rss, peak = daemon.memory_mb()
    finally:
        code = daemon.stop()
    print(
        f"(2) idle for {wall:.0f} s with {files} files watched: CPU {100 * cpu / wall:.2f} % "
        f"(goal <= 1 %), HTTP requests {requests_seen} (goal 0), RSS {rss:.0f} MB "
        f"(peak {peak:.0f} MB; goal <= 80 MB); first full pass {first_pass:.1f} s; exit {code}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=["1", "2"], action="append")
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    wanted = args.only or ["1", "2"]
    server = Server()
    try:
        with tempfile.TemporaryDirectory(prefix="jatos-sync-bench-watch-") as tmp:
            root = Path(tmp)
            if "1" in wanted:
                bench_latency(root, server, args.edits)
            if "2" in wanted:
                bench_idle(root, server, args.files, args.idle_s)
    finally:
        server.close()


if __name__ == "__main__":
    main()
