"""`jatos-sync demo`: the whole thing against a built-in JATOS stand-in, on this machine.

It starts the stand-in server (jatos_sync.testing) on 127.0.0.1 with a free port, a
temporary data folder, a user, a token and one study per mapping of the config file
(by default ./jatos-sync.yaml, which syncs sample-project/), writes a derived config that
points the same mappings at it, syncs, shows what the study now serves and — unless
`--once` — keeps watching so edits in the folder are uploaded as you save them. It ends
by saying how to point the same config at a real JATOS.

It owns the stand-in's lifecycle and the derived config; running `sync` and `watch` is
handed in by the CLI, so this module knows nothing about argument parsing or exit codes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import yaml

from jatos_sync.config import Config, load_config

Runner = Callable[[Path], int]  # runs `jatos-sync -c PATH sync|watch`, returns its exit code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once", action="store_true", help="sync once and stop instead of watching for edits"
    )


def derived_config(
    config: Config, *, url: str, token_file: Path, state_dir: Path, studies: dict[str, str]
) -> str:
    """The user's mappings, pointed at the stand-in (YAML text)."""
    document = {
        "server": {"url": url, "token_file": str(token_file), "retries": 1},
        "state_dir": str(state_dir),
        "watch": {
            "debounce": config.watch.debounce_s,
            "delete_delay": config.watch.delete_delay_s,
            "polling": config.watch.polling,
        },
        "mappings": [
            {
                "name": m.name,
                "folder": str(m.folder),
                "study": studies[m.name],
                "ignore": list(m.ignore),
                "delete": m.delete,
                "backup": m.backup,
            }
            for m in config.mappings
        ],
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def run(
    args: argparse.Namespace,
    *,
    config_path: Path,
    out: TextIO,
    sync: Runner,
    watch: Runner,
) -> int:
    # Imported here: the other commands need not load the stand-in server at start-up.
    from jatos_sync.testing import StandInServer

    config = load_config(config_path)
    with tempfile.TemporaryDirectory(prefix="jatos-sync-demo-") as tmp:
        root = Path(tmp)
        with StandInServer(personality="3.10", data_dir=root / "server") as server:
            server.add_user("demo")
            token_file = root / "token"
            token_file.write_text(server.add_token("demo", name="jatos-sync demo") + "\n")
            os.chmod(token_file, 0o600)
            studies = {
                m.name: server.add_study(f"{m.name} (jatos-sync demo)", members=["demo"])
                for m in config.mappings
            }
            demo_config = root / "jatos-sync.yaml"
            demo_config.write_text(
                derived_config(
                    config,
                    url=server.url,
                    token_file=token_file,
                    state_dir=root / "state",
                    studies={name: str(study.id) for name, study in studies.items()},
                ),
                encoding="utf-8",
            )
            print(
                f"Started a JATOS stand-in (behaves like JATOS 3.10) at {server.url} with "
                f"{len(studies)} empty stud{'y' if len(studies) == 1 else 'ies'}.\n"
                f"Syncing the mappings of {config_path} to it:\n",
                file=out,
            )
            code = sync(demo_config)
            for name, study in studies.items():
                files = sorted(server.files(study))
                print(
                    f"\nStudy {study.id} ({name}) on the stand-in now serves {len(files)} "
                    f"files: {', '.join(files[:12])}{' …' if len(files) > 12 else ''}",
                    file=out,
                )
            if not args.once and code == 0:
                folders = ", ".join(str(m.folder) for m in config.mappings)
                print(
                    f"\nWatching {folders}: edit a file there and save it - each upload is "
                    "logged below. Press Ctrl-C to stop.\n",
                    file=out,
                )
                code = watch(demo_config)
    print(_NEXT_STEPS.format(config=config_path), file=out)
    return code


_NEXT_STEPS = """
To sync the same folders to your real JATOS (3.8.2 or newer):
  1. In {config}, set server.url to your JATOS address and each mapping's `study`
     to the study's ID or UUID (shown on the study's page in JATOS).
  2. In JATOS, open your user menu -> API tokens, create a token, and make it available:
       export JATOS_TOKEN=jap_...        (or use token_file: in the config)
  3. jatos-sync check     # version, token, study and lock, per mapping
     jatos-sync sync      # deploy once    -   jatos-sync watch   # follow your edits"""
