"""`jatos-sync check`: the report of jatos_sync.check, per mapping — in words, or one JSON
document with `--json`.

Must not: change anything anywhere (check is read-only).
"""

from __future__ import annotations

import json

from jatos_sync.check import check_mapping, exit_code_for
from jatos_sync.cli.context import Context
from jatos_sync.cli.human import print_check
from jatos_sync.model import StudyInfo
from jatos_sync.sync import check_distinct_studies


def check(ctx: Context) -> int:
    config = ctx.config()
    mappings = config.select(ctx.args.mappings)
    client, info = ctx.connect(config)
    store = ctx.store(config)
    try:
        check_distinct_studies(config.mappings, client)
        reports = [
            check_mapping(mapping, client=client, token=info, store=store) for mapping in mappings
        ]
    finally:
        client.close()
    code = exit_code_for(reports)
    if not ctx.args.json:
        print_check(config.server.url, reports, ctx.out)
        return code
    document = {
        "ok": code == 0,
        "exit_code": code,
        "server": config.server.url,
        "mappings": [
            {
                "name": r.name,
                "study": r.study,
                "folder": r.folder,
                **r.facts,
                "warnings": r.warnings,
                "problems": [{"exit_code": c, "message": m} for c, m in r.problems],
                **(
                    {"reachable_studies": [_study_json(s) for s in r.reachable]}
                    if r.reachable
                    else {}
                ),
            }
            for r in reports
        ],
    }
    print(json.dumps(document, ensure_ascii=False, indent=2), file=ctx.out)
    return code


def _study_json(study: StudyInfo) -> dict[str, object]:
    return {"id": study.id, "uuid": study.uuid, "title": study.title}
