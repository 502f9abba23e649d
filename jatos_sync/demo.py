"""`jatos-sync demo`: the whole thing against a built-in JATOS stand-in, on this machine.

It copies the sample experiment that ships with the package into a folder (a new temporary
one, or `--folder DIR`), starts the stand-in server (`jatos_sync.testing`) on 127.0.0.1
with a free port, a temporary data folder, a user and a token but no study, writes a
configuration whose mapping creates the study (`create: true`) with a definition (title,
input, a consent page and the task as components) and mirrors its results, syncs — which
creates the study, uploads the files and sets its definition —, shows what the study now
serves and a participant link, plays a participant (opens a study link, writes data,
finishes the run), mirrors the results into a results folder and says where the data is,
and — unless `--once` — keeps watching, so edits in the folder are uploaded as they are
saved. It ends by saying how to do the same with a real JATOS.

It owns the demo folder, the stand-in's lifecycle, the demo's configuration and its
participant; running `sync`, `results` and `watch` is handed in by the CLI, so this module
knows nothing about argument parsing or exit codes. It needs nothing but the installed
package: no configuration file, no checkout of the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from jatos_sync.errors import ConfigError
from jatos_sync.state import write_private

if TYPE_CHECKING:
    from jatos_sync.testing import StandInServer, Study

# Runs `jatos-sync -c PATH sync|watch|results` and returns its exit code.
Runner = Callable[[Path], int]

SAMPLE = "sample_project"  # package data: the sample experiment


def copy_sample(dest: Path) -> None:
    """Copy the sample experiment shipped with the package into `dest` (new or empty)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(
            f"--folder: {dest} exists and is not an empty folder; name a new or empty folder "
            "for the demo's copy of the sample experiment"
        )
    source = resources.files("jatos_sync") / SAMPLE
    with resources.as_file(source) as path:
        shutil.copytree(path, dest, dirs_exist_ok=True)


@contextmanager
def _demo_folder(given: str | None) -> Iterator[tuple[Path, bool]]:
    """(the folder for the sample, whether it is kept afterwards)."""
    if given:
        folder = Path(os.path.abspath(Path(given).expanduser()))
        copy_sample(folder)
        yield folder, True
        return
    with tempfile.TemporaryDirectory(prefix="jatos-sync-demo-experiment-") as tmp:
        folder = Path(tmp) / "experiment"
        copy_sample(folder)
        yield folder, False


DEMO_TITLE = "Colour-word task (jatos-sync demo)"


def demo_config(
    *,
    url: str,
    token_file: Path,
    state_dir: Path,
    folder: Path,
    study_uuid: str,
    results: Path | None = None,
) -> str:
    """The demo's configuration (YAML text): the folder and the study it creates, as code,
    and its results mirrored into `results`. Paths are quoted: a folder may be named
    `exp #2` or `a: b`."""
    from jatos_sync.init.render import yaml_quote as q

    text = (
        "# Written by `jatos-sync demo`: the sample experiment and the built-in stand-in.\n"
        f"server:\n  url: {q(url)}\n  token_file: {q(str(token_file))}\n  retries: 1\n"
        f"state_dir: {q(str(state_dir))}\n"
        "mappings:\n"
        "  - name: demo\n"
        f"    folder: {q(str(folder))}\n"
        f"    study: {study_uuid}\n"
        "    create: true                # the server starts empty: sync creates the study\n"
        "    definition:                 # the study itself, kept in step by sync and watch\n"
        f"      title: {q(DEMO_TITLE)}\n"
        "      input: {trials: 16, keys: [r, g, b, y]}\n"
        "      components:\n"
        "        - title: Consent\n"
        "          html: consent.html\n"
        "        - title: Colour-word task\n"
        "          html: index.html\n"
    )
    return text + (f"    results:\n      folder: {q(str(results))}\n" if results else "")


def run(
    args: argparse.Namespace,
    *,
    out: TextIO,
    sync: Runner,
    watch: Runner,
    links: Runner | None = None,
    results: Runner | None = None,
) -> int:
    # Imported here: the other commands need not load the stand-in server at start-up.
    from jatos_sync.testing import StandInServer

    with (
        _demo_folder(getattr(args, "folder", None)) as (folder, kept),
        tempfile.TemporaryDirectory(prefix="jatos-sync-demo-") as tmp,
    ):
        root = Path(tmp)
        with StandInServer(personality="3.10", data_dir=root / "server") as server:
            server.add_user("demo")
            token_file, token = root / "token", server.add_token("demo", name="jatos-sync demo")
            write_private(token_file, (token + "\n").encode())
            study_uuid = str(uuid.uuid4())
            config = root / "jatos-sync.yaml"
            config.write_text(
                demo_config(
                    url=server.url,
                    token_file=token_file,
                    state_dir=root / "state",
                    folder=folder,
                    study_uuid=study_uuid,
                    results=root / "results" if results else None,
                ),
                encoding="utf-8",
            )
            print(
                f"The sample experiment is in {folder}"
                f"{'' if kept else ' (a temporary copy, removed at the end)'}.\n"
                f"Started a JATOS stand-in (behaves like JATOS 3.10) at {server.url}, with no "
                f"study yet. Syncing the folder creates the study {DEMO_TITLE!r} with its two "
                "components, then uploads the files:\n",
                file=out,
            )
            code = sync(config)
            created = server.find_study(study_uuid)
            files = sorted(server.files(created)) if created is not None else []
            print(
                f"\nThe study now serves {len(files)} files: "
                f"{', '.join(files[:12])}{' …' if len(files) > 12 else ''}",
                file=out,
            )
            if links is not None and code == 0:
                print("\nA link for participants (jatos-sync links):", file=out)
                out.flush()
                code = links(config)
            if results is not None and created is not None and code == 0:
                code = _participant_run(
                    server, created, token, root / "results", results, config, out
                )
            if not getattr(args, "once", False) and code == 0:
                print(
                    f"\nNow edit a file in {folder} and save it: each upload is logged "
                    "below (Ctrl-C stops the demo).\n",
                    file=out,
                )
                code = watch(config)
    print(_NEXT_STEPS, file=out)
    return code


_DEMO_DATA = (
    '[{"trial":1,"word":"RED","ink":"blue","response":"blue","rt_ms":612,"correct":true},'
    '{"trial":2,"word":"GREEN","ink":"green","response":"green","rt_ms":548,"correct":true}]'
)


def _participant_run(
    server: StandInServer,
    study: Study,
    token: str,
    folder: Path,
    results: Runner,
    config: Path,
    out: TextIO,
) -> int:
    """A participant opens a study link, does the task, finishes; then the results pass
    brings their data into the results folder."""
    from jatos_sync.testing.participant import Participant, ParticipantError

    link = server.study_link(study, "PersonalMultiple")
    print(
        f"\nA participant opens the study link {server.link_url(link)} and does the task.", file=out
    )
    participant = Participant(server.url, token)
    try:
        run = participant.open(link)
        participant.start_component(run)  # the consent page
        participant.data(run, '{"consent":true}')
        participant.start_component(run)  # the colour-word task
        participant.data(run, _DEMO_DATA)
        participant.end(run, "finish")
    except ParticipantError as exc:
        print(f"The participant's run failed: {exc}", file=out)
        return 1
    print("Mirroring the study's results (`jatos-sync results`):\n", file=out)
    code = results(config)
    data = sorted(  # by component result ID: the task's comes after the consent page's
        folder.glob("study_result_*/comp-result_*/data.txt"),
        key=lambda p: int(p.parent.name.rpartition("_")[2]),
    )
    if code == 0 and data:
        print(
            f"\nTheir task data is in {data[-1]} (a temporary folder, removed when the demo ends); "
            f"results.csv in {folder} lists every result and metadata.json has the details.",
            file=out,
        )
    return code


_NEXT_STEPS = """
To do the same with your own experiment and your JATOS (3.8.2 or newer):
  1. In JATOS, open your user menu -> API tokens and create a token.
  2. In your experiment's folder run:  jatos-sync init --create
     It asks for your JATOS address and the token, writes jatos-sync.yaml with the study
     as code (title, one component per HTML page), creates the study and uploads the
     folder. For a study that exists already: jatos-sync init (or init --adopt).
  3. jatos-sync check     # version, token, study and lock
     jatos-sync sync      # deploy once    -   jatos-sync watch   # follow your edits
     jatos-sync links     # links for participants
  4. To bring your participants' data home, add to the mapping
     results: {folder: ../data}   and run  jatos-sync results  (watch does it every 5 min)."""
