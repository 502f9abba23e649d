"""Play's route table of each JATOS release, as the stand-in serves it (docs/jatos-api.md §1).

Owns: which routes exist per personality and in which order Play tries them, the action
each one calls, its role group (docs/jatos-api.md §7.2) and how its body is read; plus the
request kinds of the request log. Pure data: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from jatos_sync.testing.personality import Personality

API_PREFIX = "/jatos/api/v1"
CONTROL_PREFIX = "/_standin"

BodyKind = Literal["none", "upload", "import", "json", "raw"]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    action: str
    # The role group (docs/jatos-api.md §7.2), "publix" (no auth) or "control" (the stand-in's
    # own API).
    group: str
    body: BodyKind = "none"


_API = re.escape(API_PREFIX)
_STUDY = _API + r"/studies/(?P<id>[^/]+)"
_RESULTS = ("results", "results/metadata", "results/data", "results/files")


def _results_routes(p: Personality) -> list[tuple[str, str, str, str, BodyKind]]:
    table: list[tuple[str, str, str, str, BodyKind]] = []
    for path in _RESULTS:
        action = path.replace("/", "_")
        for method in ("GET", "POST"):
            table.append((method, _API + "/" + path, action, "read", "json"))
    table.append(
        ("GET", _API + r"/results/files/(?P<filename>[^/]+)", "result_file", "read", "none")
    )
    if p.has("results_delete_post"):
        table.append(("POST", _API + "/results/delete", "results_delete", "write", "json"))
    table.append(("PUT", _API + "/results/delete", "results_delete", "write", "json"))
    return table


def _asset_routes(p: Personality) -> list[tuple[str, str, str, str, BodyKind]]:
    table: list[tuple[str, str, str, str, BodyKind]] = []
    if p.has_structure_route:  # 3.8.1: `…/assets/structure` falls through to download
        table.append(("GET", _STUDY + "/assets/structure", "structure", "assets", "none"))
    return [
        *table,
        # `*filepath` compiles to `.+`: an empty wildcard has no route (docs/jatos-api.md §9.2).
        ("GET", _STUDY + "/assets/(?P<fp>.+)", "download", "assets", "none"),
        ("POST", _STUDY + "/" + re.escape(p.upload_root_route), "upload", "assets", "upload"),
        ("POST", _STUDY + "/assets/(?P<fp>.+)", "upload", "assets", "upload"),
        ("DELETE", _STUDY + "/assets/(?P<fp>.+)", "delete", "assets", "none"),
    ]


def routes_for(p: Personality) -> list[Route]:
    """The routes of one release, in Play's declaration order (docs/jatos-api.md §1.4)."""
    table: list[tuple[str, str, str, str, BodyKind]] = [
        ("GET", _API + "/admin/token", "token_info", "token", "none"),
        ("GET", _API + "/studies/properties", "all_properties", "properties", "none"),
    ]
    # 3.10 keeps it deprecated, with its own semantics (docs/jatos-api.md §10.3).
    if p.has("create_39"):
        action = "create_deprecated" if p.has("studies_post") else "create_39"
        table.append(("POST", _API + "/studies/create", action, "write", "json"))
    table.append(("POST", _API + "/study", "import", "write", "import"))
    if p.has("studies_post"):
        table.append(("POST", _API + "/studies", "import_or_create", "write", "import"))
    if p.has("head_study"):
        table.append(("HEAD", _STUDY, "study_exists", "admin", "none"))
    if not p.has("patch_properties"):  # ≤3.9 declare properties, log and codes first
        table.append(("GET", _STUDY + "/properties", "study_properties", "properties", "none"))
        table.append(("GET", _STUDY + "/studyCodes", "study_codes", "write", "none"))
    table.append(("GET", _STUDY, "export", "write", "none"))
    if p.has("delete_study"):
        table.append(("DELETE", _STUDY, "delete_study", "write", "none"))
    if p.has("components_39"):
        comp = _STUDY + r"/components/(?P<cid>[^/]+)"
        table.append(("DELETE", comp, "delete_component_39", "write", "none"))
        table.append(
            ("POST", _STUDY + "/components/create", "create_component_39", "write", "json")
        )
    if p.has("patch_properties"):
        table.append(("GET", _STUDY + "/properties", "study_properties", "properties", "none"))
        table.append(("PATCH", _STUDY + "/properties", "patch_properties", "write", "json"))
    table += _asset_routes(p)
    if p.has("components_310"):
        comp = _API + r"/components/(?P<cid>[^/]+)"
        table += [
            ("POST", _STUDY + "/components", "create_component", "write", "json"),
            ("GET", _STUDY + "/components", "list_components", "read", "none"),
            ("GET", comp, "get_component", "read", "none"),
            ("PATCH", comp, "patch_component", "write", "json"),
            ("DELETE", comp, "delete_component", "write", "none"),
        ]
    if p.has("batches"):
        batch = _API + r"/batches/(?P<bid>[^/]+)"
        table += [
            ("POST", _STUDY + "/batches", "create_batch", "write", "json"),
            ("GET", _STUDY + "/batches", "list_batches", "read", "none"),
            ("GET", batch, "get_batch", "read", "none"),
            ("PATCH", batch, "patch_batch", "write", "json"),
            ("DELETE", batch, "delete_batch", "write", "none"),
        ]
    if p.has("study_codes_post"):
        code = _API + r"/studyCodes/(?P<code>[^/]+)"
        table += [
            ("GET", _STUDY + "/studyCodes", "study_codes", "write", "json"),
            ("POST", _STUDY + "/studyCodes", "study_codes", "write", "json"),
            ("GET", code, "get_study_code", "read", "none"),
            ("PATCH", code, "patch_study_code", "write", "json"),
        ]
    table += _results_routes(p)
    # The participant side (docs/jatos-api.md §13.3) and the stand-in's own control API (not JATOS).
    control = re.escape(CONTROL_PREFIX)
    run = control + r"/runs/(?P<srid>[0-9]+)"
    table += [
        ("GET", "/publix/run", "publix_entry", "publix", "none"),
        ("GET", r"/publix/(?P<code>[^/]+)", "publix_run", "publix", "none"),
        ("GET", run, "control_get", "control", "none"),
        ("PUT", run + r"/files/(?P<filename>[^/]+)", "control_file", "control", "raw"),
        ("POST", run + r"/(?P<verb>[a-z-]+)", "control_post", "control", "json"),
        ("PUT", control + r"/batches/(?P<bid>[0-9]+)", "control_batch", "control", "json"),
    ]
    return [Route(m, re.compile(rx, re.DOTALL), a, g, b) for m, rx, a, g, b in table]


_KIND_PATTERNS: list[tuple[str | None, re.Pattern[str], str]] = [
    (None, re.compile(r"/jatos/api/v1/admin/token/?$"), "token"),
    (None, re.compile(r"/jatos/api/v1/studies/(?:[^/]+/)?properties/?$"), "properties"),
    ("GET", re.compile(r"/jatos/api/v1/studies/[^/]+/assets/structure$"), "list"),
    ("GET", re.compile(r"/jatos/api/v1/studies/[^/]+/assets/."), "download"),
    ("POST", re.compile(r"/jatos/api/v1/studies/[^/]+/assets(?:/.*)?$", re.DOTALL), "upload"),
    ("DELETE", re.compile(r"/jatos/api/v1/studies/[^/]+/assets/."), "delete"),
    ("POST", re.compile(r"/jatos/api/v1/(?:study|studies)/?$"), "import"),
    ("GET", re.compile(r"/jatos/api/v1/studies/[^/]+/?$"), "export"),
    (None, re.compile(r"/jatos/api/v1/results(?:/.*)?$", re.DOTALL), "results"),
    (None, re.compile(r"/jatos/api/v1/(?:studies/[^/]+/)?studyCodes(?:/.*)?$"), "codes"),
    (
        None,
        re.compile(
            r"/jatos/api/v1/(?:studies/[^/]+/(?:components|batches)|components|batches)(?:/.*)?$"
        ),
        "components",
    ),
    ("GET", re.compile(r"/publix/"), "publix"),
    (None, re.compile(re.escape(CONTROL_PREFIX) + "/"), "control"),
]


def classify(method: str, path: str) -> str:
    """The request kind of `RequestRecord.kind` (from the URL shape, for every version)."""
    verb = "GET" if method == "HEAD" else method
    for want, pattern, kind in _KIND_PATTERNS:
        if (want is None or want == verb) and pattern.search(path):
            return kind
    return "other"
