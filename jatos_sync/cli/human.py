"""What the commands print for people: each mapping's result, the `check` report, what a
running daemon says, results mirrored — in words, one summary line per mapping first.

Owns the wording and the look of these lines. On a terminal a summary line starts with a
symbol and has a colour (`✓ stroop → study 42: 9 uploaded, 0 deleted`; `⚠`/`✖` when a
person must act or something failed; no colour with `NO_COLOR`); elsewhere (a pipe, a
file) the same words without them. Paths and texts from the server or the disk are shown
with control characters escaped.

Must not: decide anything, or write JSON (the commands do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from jatos_sync.logs import is_terminal, redact
from jatos_sync.sentences import marked

if TYPE_CHECKING:
    from jatos_sync.check import CheckReport
    from jatos_sync.pull import PullResult
    from jatos_sync.results import ResultsOutcome
    from jatos_sync.sync import MappingResult

LIST_LIMIT = 20  # how many paths a human summary lists before "… and N more"


class Style:
    """How summary lines look on one stream: with a symbol and colour on a terminal."""

    def __init__(self, *, symbols: bool, colours: bool) -> None:
        self.symbols = symbols
        self.colours = colours

    @classmethod
    def of(cls, stream: TextIO, environ: Mapping[str, str]) -> Style:
        terminal = is_terminal(stream)
        return cls(symbols=terminal, colours=terminal and not environ.get("NO_COLOR"))

    def head(self, text: str, exit_code: int) -> str:
        """A mapping's summary line, marked by how it ended (on a terminal)."""
        return marked(text, exit_code=exit_code, colours=self.colours) if self.symbols else text


PLAIN = Style(symbols=False, colours=False)


def shown(path: object) -> str:
    """A path for a terminal: control characters (escape sequences) are shown escaped."""
    text = str(path)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def print_paths(out: TextIO, label: str, paths: Sequence[object]) -> None:
    prefix = f"  {label} " if label else "  "
    for path in paths[:LIST_LIMIT]:
        print(f"{prefix}{shown(path)}", file=out)
    if len(paths) > LIST_LIMIT:
        print(f"  … and {len(paths) - LIST_LIMIT} more", file=out)


def print_result(r: MappingResult, out: TextIO, style: Style = PLAIN) -> None:
    """One mapping's `sync` or `status` result: the summary line, then what needs
    attention."""
    verb = ("would upload", "would delete") if r.dry_run else ("uploaded", "deleted")
    counts = [
        f"{len(r.uploaded)} {verb[0]}",
        f"{len(r.deleted)} {verb[1]}",
        f"{r.unchanged} unchanged",
    ]
    counts += [f"{len(r.skipped)} skipped"] if r.skipped else []
    counts += [f"{len(r.failed)} failed"] if r.failed else []
    counts += [f"{len(r.withheld)} deletions withheld"] if r.withheld else []
    counts += [f"{len(r.definition)} change(s) of the study itself"] if r.definition else []
    if r.error is not None and not (r.uploaded or r.deleted or r.failed or r.definition):
        text = f"{r.name} → study {r.study}: stopped. {redact(str(r.error))}"
        print(style.head(text, r.exit_code), file=out)
        return
    print(style.head(f"{r.name} → study {r.study}: {', '.join(counts)}", r.exit_code), file=out)
    if r.definition:
        from jatos_sync.definition import describe  # only for the study as code

        print_paths(out, "", [describe(change, dry_run=r.dry_run) for change in r.definition])
    if r.definition_withheld:
        print(f"  withheld: {r.definition_withheld}", file=out)
    if r.error is not None:
        print(f"  stopped: {redact(str(r.error))}", file=out)
    if r.dry_run:
        print_paths(out, verb[0], r.uploaded)
        print_paths(out, verb[1], r.deleted)
        print_paths(out, "would first save the server's copy of", r.backed_up)
    elif r.backed_up:
        print_paths(out, "saved the server's copy of", r.backed_up)
    for problem in r.skipped:
        print(f"  skipped {shown(problem.path)}: {shown(problem.reason)}", file=out)
    for problem in r.failed:
        print(f"  failed {shown(problem.path)}: {shown(redact(problem.reason))}", file=out)
    if r.state_error:
        print(f"  {r.state_error}", file=out)
    if r.withheld:
        reason = r.withheld_reason or "an upload in this pass failed; they wait for the next pass"
        print(f"  withheld {len(r.withheld)} deletion(s): {reason}", file=out)
        print_paths(out, "withheld", r.withheld)
    if r.server_only:
        print(
            f"  kept {len(r.server_only)} server file(s) that were never synced from this "
            "folder (added in the JATOS GUI or by a colleague); `jatos-sync sync --prune` "
            "deletes them after saving a copy:",
            file=out,
        )
        print_paths(out, "only on the server:", r.server_only)


def print_daemon(daemon: dict[str, Any], out: TextIO) -> None:
    """What a running `watch` daemon reports (its status file in the state directory)."""
    pids = ", ".join(str(p) for p in daemon.get("pids") or [daemon.get("pid")])
    print(f"\nwatch daemon (pid {pids}) is running:", file=out)
    mappings = [m for m in daemon.get("mappings") or [] if isinstance(m, dict)]
    if mappings and all(m.get("state") == "paused" for m in mappings):
        print(
            "  NOTHING IS BEING SYNCED: every mapping is paused. Fix what each one's last "
            "error says; the daemon tries again by itself.",
            file=out,
        )
    for m in daemon.get("mappings") or []:
        age = m.get("oldest_pending_age_s")
        since = f", oldest {age:.0f} s ago" if isinstance(age, (int, float)) else ""
        last = m.get("last_sync_age_s")
        last_text = f"{last:.0f} s ago" if isinstance(last, (int, float)) else "not yet"
        print(
            f"  {m.get('name')}: {m.get('state')}, {m.get('mode')}, "
            f"{m.get('pending', 0)} pending{since}; last sync {last_text}",
            file=out,
        )
        if m.get("last_error"):
            print(f"    last error: {shown(redact(str(m['last_error'])))}", file=out)
        for problem in m.get("not_followed") or []:
            print(f"    not followed: {shown(str(problem))}", file=out)
        if m.get("server_only"):
            print(
                f"    {m['server_only']} server file(s) never synced from this folder are kept "
                "(`jatos-sync sync --prune` deletes them)",
                file=out,
            )
        if isinstance(m.get("results"), dict):
            _print_daemon_results(m["results"], out)


def _print_daemon_results(r: dict[str, Any], out: TextIO) -> None:
    """A results mirror's line in `status`: its last pass, its counts, its last error."""
    age = r.get("last_pass_age_s")
    last = f"last pass {age:.0f} s ago" if isinstance(age, (int, float)) else "no pass yet"
    print(
        f"    results into {shown(r.get('folder'))}: {r.get('state')}, {last}; "
        f"{r.get('final', 0)} final, {r.get('running', 0)} running, "
        f"{r.get('withdrawn', 0)} withdrawn",
        file=out,
    )
    if r.get("last_error"):
        print(f"    results error: {shown(redact(str(r['last_error'])))}", file=out)


def print_check(server_url: str, reports: Sequence[CheckReport], out: TextIO) -> None:
    """The `check` report: per mapping its facts, warnings and problems."""
    print(f"server {server_url}", file=out)
    for r in reports:
        print(f"{r.name} → study {r.study} ({r.folder})", file=out)
        for key, value in r.facts.items():
            print(f"  {key.replace('_', ' ')}: {value}", file=out)
        for warning in r.warnings:
            print(f"  warning: {warning}", file=out)
        for _code, message in r.problems:
            print(f"  PROBLEM: {redact(message)}", file=out)
        if r.reachable:
            print("  The studies your token can reach (put an ID or UUID in `study:`):", file=out)
            for study in r.reachable:
                print(f"    {study.id:>6}  {study.uuid}  {shown(study.title)}", file=out)
        if not r.problems:
            print("  ok: ready to sync", file=out)


def print_results(o: ResultsOutcome, out: TextIO) -> None:
    """One mapping's `results` pass: what was new, and what the folder holds now."""
    head = f"{o.name} → study {o.study}, results in {shown(o.folder)}"
    if o.error is not None and not (o.new or o.updated or o.withdrawn):
        print(f"{head}: stopped. {redact(str(o.error))}", file=out)
        return
    parts = [f"{len(o.new)} new", f"{len(o.updated)} updated", f"{len(o.withdrawn)} withdrawn"]
    parts += [f"{len(o.deleted_on_server)} deleted on the server"] if o.deleted_on_server else []
    parts += [f"{o.unchanged} unchanged"] + ([f"{len(o.failed)} failed"] if o.failed else [])
    print(f"{head}: {', '.join(parts)} (component results)", file=out)
    c = o.counts
    print(
        f"  in the folder: {c['final']} final, {c['running']} running, {c['withdrawn']} "
        f"withdrawn, {c['deleted_on_server']} deleted on the server; see results.csv",
        file=out,
    )
    if o.error is not None:
        print(f"  stopped: {redact(str(o.error))}", file=out)
    for problem in o.failed:
        print(f"  failed {shown(problem.path)}: {shown(redact(problem.reason))}", file=out)


def print_pull(r: PullResult, out: TextIO, style: Style = PLAIN) -> None:
    """`pull`'s summary: one line, then what needs attention."""
    counts = [f"{len(r.downloaded)} downloaded", f"{r.unchanged} unchanged"]
    counts += [f"{len(r.kept)} kept"] if r.kept else []
    counts += [f"{len(r.failed)} failed"] if r.failed else []
    counts += [f"{len(r.skipped)} skipped"] if r.skipped else []
    counts += [f"{r.ignored} ignored"] if r.ignored else []
    print(style.head(f"{r.name} ← study {r.study}: {', '.join(counts)}", r.exit_code), file=out)
    if r.created_folder:
        print(f"  created the folder {r.folder}", file=out)
    if r.removed_leftovers:
        print(
            f"  removed {len(r.removed_leftovers)} temporary file(s) that an interrupted pull "
            "had left",
            file=out,
        )
    if r.state_error:
        print(f"  {r.state_error}", file=out)
    print_paths(out, "", [f"kept {p.path}: {p.reason}" for p in r.kept])
    print_paths(out, "", [f"failed {p.path}: {p.reason}" for p in r.failed])
    print_paths(out, "", [f"skipped {p.path}: {p.reason}" for p in r.skipped])
    replaced = sorted(r.backed_up.items(), key=lambda item: str(item[0]))
    print_paths(out, "", [f"replaced {p}; your previous copy is saved as {b}" for p, b in replaced])
    if r.kept:
        print(
            f"  The kept files differ from the server's copies. Use `jatos-sync pull --force "
            f"{r.name}` to replace them; a backup of each is kept.",
            file=out,
        )
    if r.local_only:
        print(
            f"  {len(r.local_only)} local file(s) are not on the server; pull leaves them "
            "alone (the next `jatos-sync sync` would upload them).",
            file=out,
        )
