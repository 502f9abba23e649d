"""codes.py (`jatos-sync links`): choosing the batch and refusing a worker type the batch
does not allow, as pure decisions over a server study (the requests are in
test_study_e2e.py and test_studies.py)."""

from __future__ import annotations

import dataclasses

import pytest

from jatos_sync.codes import check_allowed, choose_batch
from jatos_sync.definition import ServerBatch, ServerStudy
from jatos_sync.errors import ConfigError
from tests.test_definition import server_study

PERSONAL = frozenset({"PersonalSingle", "PersonalMultiple"})


def batch(n: int, types: frozenset[str] = PERSONAL) -> ServerBatch:
    return ServerBatch(n, f"00000000-0000-4000-8000-{n:012d}", f"Batch {n}", True, types)


def study(*batches: ServerBatch) -> ServerStudy:
    return server_study(batches=batches)


def test_the_default_batch_is_the_first_and_a_named_one_must_be_the_studys() -> None:
    first, second = batch(4), batch(9)
    assert choose_batch(study(first, second), None) is first
    assert choose_batch(study(first, second), 9) is second
    with pytest.raises(ConfigError, match=r"has no batch 7; its batches: 4 \(Batch 4\)"):
        choose_batch(study(first, second), 7)
    with pytest.raises(ConfigError, match="has no batch, so JATOS cannot make links"):
        choose_batch(study(), None)


def test_a_type_the_batch_does_not_allow_is_refused_with_how_to_allow_it() -> None:
    check_allowed(batch(1), "personal-single")
    with pytest.raises(ConfigError) as refused:
        check_allowed(batch(1), "general-multiple")
    message = str(refused.value)
    assert "does not allow general-multiple links" in message
    assert "it allows: Personal Multiple, Personal Single" in message
    assert "tick 'General Multiple'" in message and "does not change a batch" in message
    check_allowed(
        dataclasses.replace(batch(1), worker_types=PERSONAL | {"GeneralMultiple"}),
        "general-multiple",
    )
