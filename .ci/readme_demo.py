"""CI: run the README's first command (install + `jatos-sync demo`) as a newcomer would —
in a fresh clone with a fresh virtual environment — and check that it syncs the sample
experiment, starts watching, and stops cleanly with exit code 0 on Ctrl-C (SIGINT). Then,
in another fresh clone with a new HOME, the Quick start's install step as it is written
(venv, pip install, `source .venv/bin/activate`): afterwards `jatos-sync` must be the
command of that environment. (tests/test_readme.py runs the Quick start's jatos-sync
commands against the stand-in.)

Usage: python3 .ci/readme_demo.py   (from the repository root)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The shell commands of the README's first code block."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("```sh") + 1
    end = lines.index("```", start)
    return lines[start:end]


def quick_start_install() -> str:
    """The Quick start's shell block that creates the virtual environment."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Quick start\n") : text.index("\n## Commands\n")]
    for block in section.split("```sh\n")[1:]:
        commands = block.split("```")[0]
        if "python3 -m venv" in commands:
            return commands
    raise SystemExit("::: the README's Quick start has no install block")


def check_quick_start_install() -> bool:
    """Run the install block in a fresh clone, as written, and ask the shell which
    jatos-sync it found."""
    with tempfile.TemporaryDirectory(prefix="jatos-sync-quickstart-") as tmp:
        clone, home = Path(tmp) / "jatos-sync", Path(tmp) / "home"
        home.mkdir()
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        script = quick_start_install() + "command -v jatos-sync\n"
        result = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=clone,
            env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            capture_output=True,
            text=True,
            check=False,
        )
        found = result.stdout.strip().splitlines()[-1:] == [str(clone / ".venv/bin/jatos-sync")]
        if result.returncode != 0 or not found:
            print(result.stdout[-1500:], result.stderr[-1500:])
            print("::: the README's Quick start install step did not give a jatos-sync command")
            return False
    print("::: README Quick start install: jatos-sync is the virtual environment's command")
    return True


def main() -> int:
    if not check_quick_start_install():
        return 1
    demo = readme_commands()[0]
    assert demo.endswith("jatos-sync demo"), demo
    with tempfile.TemporaryDirectory(prefix="jatos-sync-readme-") as tmp:
        clone = Path(tmp) / "jatos-sync"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        log = Path(tmp) / "demo.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", demo],
                cwd=clone,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 300  # includes the pip install
            # Not a terminal, so the log is JSON lines: the daemon says watch_ready when
            # every folder is watched and in step.
            while b'"event": "watch_ready"' not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                    print(log.read_text(errors="replace"))
                    print("::: the README's demo command did not reach watching")
                    return 1
                time.sleep(0.2)
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a person would
            code = proc.wait(timeout=30)
        text = log.read_text(errors="replace")
    ok = code == 0 and "now serves 10 files" in text and "jatos-sync init" in text
    print(text[-1500:] if not ok else "::: README demo command: synced, watched, stopped (exit 0)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
