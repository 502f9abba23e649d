"""PyYAML's syntax complaints, said plainly: which line, and what to do about it.

Owns the wording of a YAML syntax error for the mistakes people make by hand (lines
indented out of step, tabs, a `:` in a value, a quote or bracket left open, an alias
without its anchor); anything else keeps PyYAML's own words. config_reader.py puts the
file's name in front. Pure: it reads the error and the file's text, nothing else, and
imports PyYAML only for the type.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import yaml


def in_words(exc: yaml.MarkedYAMLError, text: str) -> str:
    """PyYAML's complaint said plainly, for the mistakes people make by hand: lines indented
    out of step, tabs, a `:` in a value, a quote or bracket left open."""
    problem, context = exc.problem or "", exc.context or ""
    here = exc.problem_mark.line + 1 if exc.problem_mark else 0
    there = exc.context_mark.line + 1 if exc.context_mark else 0
    lines = text.splitlines()

    def indent(number: int) -> int:
        line = lines[number - 1] if 0 < number <= len(lines) else ""
        return len(line) - len(line.lstrip(" "))

    above = next((n for n in range(here - 1, 0, -1) if lines[n - 1].strip()), 0)
    if "'\\t'" in problem or "\t" in problem:
        return f"line {here} holds a tab ('\\t'): tabs are not allowed in YAML; use spaces"
    if "mapping values are not allowed" in problem:
        line = lines[here - 1] if 0 < here <= len(lines) else ""
        column = exc.problem_mark.column if exc.problem_mark else 0
        if ": " in line[:column] or line[:column].rstrip().endswith(":"):
            return f"the value on line {here} holds ': '; put the value in quotes"
        if above and not re.search(r":(\s|$)", lines[above - 1]):
            return f"line {above} has no ':' after its key, so line {here} reads as part of it"
        if above and indent(here) > indent(above):
            return f"line {here} is indented more than line {above}; keys must line up"
        return f"line {here} has a ':' where YAML does not expect one"
    if "expected <block end>" in problem:
        if above and indent(here) != indent(above) and not lines[here - 1].lstrip().startswith("-"):
            return (
                f"line {here} is indented {indent(here)} spaces and line {above} "
                f"{indent(above)}; keys of one mapping must line up"
            )
        return (
            f"line {here} lines up with the list above it but does not start with '- ': "
            "indent it under the entry it belongs to, or start a new entry with '- '"
        )
    if "quoted scalar" in context:
        return f"a quote opened on line {there} is never closed"
    if "flow sequence" in context or "flow mapping" in context:
        pair = "[ ]" if "sequence" in context else "{ }"
        return (
            f"a {pair[0]} opened on line {there} is not closed with {pair[2]} (or a ',' is missing)"
        )
    if "undefined alias" in problem:
        return f"{problem.split('alias', 1)[1].strip()} is an alias (*) with no anchor (&) above it"
    if "expected a single document" in context:
        return "the file must hold exactly one YAML document (no second '---')"
    if "could not find expected ':'" in problem:
        return f"line {there or here} has a key without ':' after it"
    on = f" on line {there}" if there else ""
    return f"{context}{on}, {problem}" if context else problem or "not valid YAML"
