"""`jatos-sync export [MAPPING] [-o FILE]`: the mapping's study as a `.jzip` file.

Downloads the archive JATOS makes of the study (`GET /studies/{id}`,
docs/jatos-api.md §11.1) into a temporary file beside the destination, checks it (a zip
whose entries are intact and safe, with exactly one `.jas` that describes this study:
jzip.py), and only then renames it into place, so the destination is either the old file or
a whole, checked archive. The default name is `<mapping>-<UTC time>.jzip` in the current
folder.

It owns the command's arguments and its output; the request is studies.py's, the checks
jzip.py's. It must not map errors to exit codes (jatos_sync.cli does).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import structlog

from jatos_sync.client import JatosClient
from jatos_sync.config import Config
from jatos_sync.errors import ArchiveError, ConfigError, ServerUnavailableError
from jatos_sync.pull import select_mapping
from jatos_sync.studies import export_checked

log = structlog.get_logger("jatos_sync.export")


def default_name(mapping: str, now: datetime) -> str:
    return f"{mapping}-{now.strftime('%Y%m%dT%H%M%SZ')}.jzip"


def run(
    args: argparse.Namespace,
    *,
    config: Config,
    client: JatosClient,
    out: TextIO,
    cwd: Path | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> int:
    """The `export` command: 0, or raises `JatosSyncError`."""
    mapping = select_mapping(config, getattr(args, "mapping", None), command="export")
    here = cwd or Path.cwd()
    given = getattr(args, "output", None)
    dest = here / Path(given).expanduser() if given else here / default_name(mapping.name, clock())
    dest = Path(os.path.abspath(dest))
    if dest.is_dir():
        raise ConfigError(f"-o: {dest} is a folder; name the archive file to write")
    if not dest.parent.is_dir():
        raise ConfigError(f"-o: the folder {dest.parent} does not exist")
    tmp = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.part")
    try:
        try:
            study, archive = export_checked(client, mapping.study, tmp)
        except ArchiveError as exc:
            raise ServerUnavailableError(
                f"The export of study {mapping.study} is not a whole study archive ({exc}); "
                f"nothing was written to {dest}. Try again."
            ) from None
        os.replace(tmp, dest)
    except OSError as exc:
        raise ConfigError(f"could not write {dest} ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    size = dest.stat().st_size
    log.info("study_exported", study=study.uuid, path=str(dest), bytes=size)
    print(
        f"Exported study {study.title!r} ({study.uuid}) to {dest}: {len(archive.files)} "
        f"file(s) and its .jas, {size} bytes.",
        file=out,
    )
    return 0
