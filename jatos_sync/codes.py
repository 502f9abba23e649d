"""`jatos-sync links [MAPPING] [--type T] [--amount N] [--batch ID] [--comment TEXT]
[--json]`: participant links for the mapping's study, one per line.

A link is `<base>/publix/<code>`, under the server's path prefix (docs/jatos-api.md §13.3).
Personal links are new codes each time; a general link is the batch's one code for its type,
the same for everyone. The batch must allow the worker type (a new 3.10 study allows only
the personal types, docs/jatos-api.md §13.3): when it does not, the command says so and how
to change it in JATOS, and never changes the batch itself. The batch is always named in the
request, after checking that it belongs to the study (JATOS does not check that,
docs/jatos-api.md §15.2 item 17).

It owns the command's arguments, the checks and the output; the requests are studies.py's.
It must not map errors to exit codes (jatos_sync.cli does).
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

import structlog

from jatos_sync.client import JatosClient
from jatos_sync.config import Config
from jatos_sync.definition import TITLE_MAX, ServerBatch, ServerStudy, has_html
from jatos_sync.errors import ConfigError
from jatos_sync.pull import select_mapping
from jatos_sync.studies import (
    GENERAL_TYPES,
    MAX_CODES,
    WORKER_TYPES,
    link_url,
    read_study,
    study_codes,
)

log = structlog.get_logger("jatos_sync.codes")

DEFAULT_TYPE = "personal-multiple"  # allowed by every new batch, in every version
_SHOWN_TYPE = {
    "PersonalSingle": "Personal Single",
    "PersonalMultiple": "Personal Multiple",
    "GeneralSingle": "General Single",
    "GeneralMultiple": "General Multiple",
}


def choose_batch(study: ServerStudy, batch_id: int | None) -> ServerBatch:
    """The batch to make links in: the one named (it must be the study's), else the
    study's first, its default batch (docs/jatos-api.md §10.5)."""
    if not study.batches:
        raise ConfigError(
            f"study {study.uuid} has no batch, so JATOS cannot make links for it; add one in "
            "the study's Worker & Batch Manager in JATOS"
        )
    if batch_id is None:
        return study.batches[0]
    for batch in study.batches:
        if batch.id == batch_id:
            return batch
    known = ", ".join(f"{b.id} ({b.title})" for b in study.batches)
    raise ConfigError(f"--batch: study {study.uuid} has no batch {batch_id}; its batches: {known}")


def check_allowed(batch: ServerBatch, worker_type: str) -> None:
    """Refuse a type the batch does not allow, saying how to allow it in JATOS."""
    name = WORKER_TYPES[worker_type][0]
    if name in batch.worker_types:
        return
    allowed = ", ".join(_SHOWN_TYPE.get(t, t) for t in sorted(batch.worker_types)) or "none"
    raise ConfigError(
        f"batch {batch.title!r} (ID {batch.id}) does not allow {worker_type} links (it allows: "
        f"{allowed}). To allow them, open the study in JATOS → Worker & Batch Manager → the "
        f"batch's Properties → Allowed types, and tick {_SHOWN_TYPE[name]!r}. jatos-sync "
        "does not change a batch for you."
    )


def run(args: argparse.Namespace, *, config: Config, client: JatosClient, out: TextIO) -> int:
    """The `links` command: prints the links; 0, or raises `JatosSyncError`."""
    mapping = select_mapping(config, getattr(args, "mapping", None), command="links")
    worker_type: str = args.type
    amount: int = args.amount
    if not 1 <= amount <= MAX_CODES:
        raise ConfigError(f"--amount: expected a whole number from 1 to {MAX_CODES}")
    if args.comment is not None and (len(args.comment) > TITLE_MAX or has_html(args.comment)):
        raise ConfigError(f"--comment: at most {TITLE_MAX} characters, and no HTML")
    study = read_study(client, mapping.study)
    batch = choose_batch(study, args.batch)
    check_allowed(batch, worker_type)
    if not study.active or not batch.active:
        what = "study" if not study.active else f"batch {batch.title!r}"
        log.warning("links_inactive", hint=f"the {what} is deactivated: links will not open")
    general = worker_type in GENERAL_TYPES
    if general and amount > 1:
        log.info("general_link", hint="a general link is one for everyone; printing it once")
    codes = study_codes(
        client,
        study,
        worker_type=worker_type,
        batch=batch,
        amount=1 if general else amount,
        comment=args.comment,
    )
    links = [link_url(client.base_url, code) for code in codes]
    if args.json:
        document = {
            "ok": True,
            "exit_code": 0,
            "study": study.uuid,
            "batch": batch.id,
            "type": worker_type,
            "links": links,
        }
        print(json.dumps(document, ensure_ascii=False, indent=2), file=out)
    else:
        for link in links:
            print(link, file=out)
    return 0
