"""Fixtures of the unit tests: a small finished campaign for replay and explain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mummi_spec.runtime.history import History
from tests import steering
from tests.steering import Finished


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """tests/steering.py's campaign, run once per test module."""
    return steering.run(tmp_path_factory.mktemp("steering"))


@pytest.fixture
def history(finished: Finished) -> Iterator[History]:
    """Its record, opened read-only."""
    h = History(finished.ws)
    yield h
    h.close()
