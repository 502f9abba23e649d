"""The repository stands on its own: every file git tracks refers only to files inside it.

A maintainer who clones the repository gets the code, the tests and docs/; nothing may point
at a document they do not have. Comments cite the project's own documents in one form,
"docs/jatos-api.md §N.M" and "docs/safety.md, rule N", and each citation names a section or
rule that exists. The checks read `git ls-files`, so they skip outside a git checkout (an
unpacked sdist); CI always runs them in one.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Names of the documents the project was built from, which a clone does not contain. Built
# from pieces so that this file does not name them itself.
OUTSIDE_DOCUMENTS = (
    "PRODUCT" + ".md",
    "FIELD" + "_NOTES",
    "STYLE" + ".md",
    "JATOS_ASSETS" + "_API",
    "JATOS_STUDY_RESULTS" + "_API",
    "../" + "shared",
    "/work/" + "shared",
    "API reference" + " §",
)


# A citation of docs/jatos-api.md: the document, then one or more sections separated by
# commas: "§N", "§N.M", a range "§N-§M", or items of the list in §N.M ("§N.M item K",
# "§N.M items K-L").
_SECTION = r"§(\d+(?:\.\d+)?)(?:[-\u2013]§?(\d+(?:\.\d+)?))?(?: items? (\d+)(?:[-\u2013](\d+))?)?"
_CITATION = re.compile(r"docs/jatos-api\.md (" + _SECTION + r"(?:, " + _SECTION + r")*)")
_SAFETY_RULE = re.compile(r"docs/safety\.md, rules? (\d+)")
_README_SECTION = re.compile(r'README, ["]([^"]+)["]')


def _tracked() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not in a git checkout")
    return [name for name in out.decode("utf-8", "surrogateescape").split("\0") if name]


def _texts(names: list[str], *, suffixes: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    for name in names:
        if suffixes and not name.endswith(suffixes):
            continue
        path = ROOT / name
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (images in the sample experiment)
        yield name, data.decode("utf-8", "replace")


def _joined(text: str) -> str:
    """`text` with line breaks inside comments and docstrings removed, so that a citation
    broken over two lines still reads as one."""
    return re.sub(r"\n[ \t]*(?:#[ \t]*)?", " ", text)


def _sections() -> dict[str, int]:
    """The section numbers of docs/jatos-api.md ("3", "3.3"), each with the number of
    items of its numbered list (0 for none)."""
    found: dict[str, int] = {}
    section = ""
    for line in (ROOT / "docs" / "jatos-api.md").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{2,3} (\d+(?:\.\d+)?)[. ]", line)
        if heading:
            section = heading.group(1)
            found[section] = 0
        elif section and (item := re.match(r"(\d+)\. ", line)):
            found[section] = max(found[section], int(item.group(1)))
    return found


def _safety_rules() -> set[str]:
    text = (ROOT / "docs" / "safety.md").read_text(encoding="utf-8")
    return set(re.findall(r"^## (\d+)\. ", text, flags=re.MULTILINE))


def test_no_tracked_file_names_a_document_outside_the_repository() -> None:
    offenders = [
        f"{name}: {needle!r}"
        for name, text in _texts(_tracked())
        for needle in OUTSIDE_DOCUMENTS
        if needle in text
    ]
    assert not offenders, "cite docs/jatos-api.md or docs/safety.md instead:\n" + "\n".join(
        offenders
    )


def test_every_section_sign_in_code_and_tests_names_its_document() -> None:
    """A bare "§N.M" cannot be followed: which document, which numbering? Every § in the
    package, the tests, the benchmarks and SECURITY.md belongs to a citation of
    docs/jatos-api.md (or of an RFC)."""
    names = [
        n
        for n in _tracked()
        if PurePosixPath(n).parts[0] in {"jatos_sync", "tests", "benchmarks"} or n == "SECURITY.md"
    ]
    offenders = []
    for name, text in _texts(names, suffixes=(".py", ".md")):
        rest = _CITATION.sub("", _joined(text))
        rest = re.sub(r"RFC \d+ §\d+(?:\.\d+)*", "", rest)
        for match in re.finditer(r".{0,40}§\d.{0,20}", rest):
            offenders.append(f"{name}: …{match.group(0)}…")
    assert not offenders, "write docs/jatos-api.md §N.M:\n" + "\n".join(offenders)


def _readme_headings() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return {h.strip().casefold() for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_every_citation_names_a_section_or_rule_that_exists() -> None:
    sections, rules, headings = _sections(), _safety_rules(), _readme_headings()
    # The readers work: sections, list items and rules are found.
    assert {"1.1", "9.6", "15"} <= sections.keys() and sections["15.2"] >= 20
    assert {"1", "13"} <= rules and "exit codes" in headings
    wrong = []
    for name, text in _texts(_tracked(), suffixes=(".py", ".md")):
        joined = _joined(text)
        for citation in _CITATION.finditer(joined):
            for part in re.finditer(_SECTION, citation.group(1)):
                first, last, item, last_item = part.groups()
                for number in filter(None, (first, last)):
                    if number not in sections:
                        wrong.append(f"{name}: docs/jatos-api.md §{number}")
                for k in filter(None, (item, last_item)):
                    if not 1 <= int(k) <= sections.get(first, 0):
                        wrong.append(f"{name}: docs/jatos-api.md §{first} item {k}")
        for rule in _SAFETY_RULE.finditer(joined):
            if rule.group(1) not in rules:
                wrong.append(f"{name}: docs/safety.md, rule {rule.group(1)}")
        for heading in _README_SECTION.finditer(joined):
            if heading.group(1).casefold() not in headings:
                wrong.append(f"{name}: README section {heading.group(1)!r}")
    assert not wrong, "no such section or rule:\n" + "\n".join(wrong)
