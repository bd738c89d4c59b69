"""Candidates a store cannot name or read: rejected once with the reason, never a crash loop.

Real stores, as a campaign meets them: a file name that is not UTF-8 written into a
filesystem namespace, garbage appended to a taridx index, an archive cut short.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mummi_spec.runtime.campaign import Campaign
from mummi_spec.runtime.readtries import READ_TRIES
from mummi_spec.runtime.records import Record, encode
from tests.reliability.candidates import Rig


@pytest.fixture
def fs_rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path, "filesystem")
    yield rig
    rig.close()


@pytest.fixture
def tar_rig(tmp_path: Path) -> Iterator[Rig]:
    pytest.importorskip("pytaridx")
    rig = Rig(tmp_path, "taridx")
    yield rig
    rig.close()


def test_a_file_name_that_is_not_utf8_is_rejected_once_with_the_reason(
        fs_rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig = fs_rig
    rig.write(1, 2)
    folder = os.fsencode(rig.tmp_path / "ws" / "latent" / rig.namespace)
    # Written mid-run by an application with a Latin-1 locale: listed as 'structure_\udcff'.
    Path(os.fsdecode(folder + b"/structure_\xff")).write_bytes(encode(Record(np.ones(8))))
    with caplog.at_level(logging.WARNING, "mummi.ingest"):
        assert rig.ingest.run_once() == 2
        rig.write(3)
        assert rig.ingest.run_once() == 1  # the pass goes on: nothing frozen, nothing re-read
        assert rig.ingest.run_once() == 0
    assert rig.ingest.rejected == 1 and rig.ingest.ingested == 3
    (key, why), = rig.rejected().items()
    assert key == "structure_\udcff" and "not UTF-8" in why
    assert caplog.text.count("rejected") == 1 and "will retry" not in caplog.text
    caplog.clear()
    # A restart (its checkpoint knows the accepted ones) does not read or reject it again.
    again = rig.start({f"structure_{i}" for i in (1, 2, 3)})
    with caplog.at_level(logging.WARNING, "mummi.ingest"):
        assert again.run_once() == 0
    assert again.rejected == 1 and caplog.text == ""
    assert len(rig.rejected()) == 1


def _index(rig: Rig) -> Path:
    return rig.tmp_path / "ws" / "latent" / f"{rig.namespace}.tar.pylst"


def test_a_damaged_taridx_index_is_skipped_past_with_one_warning(
        tar_rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig = tar_rig
    rig.write(1, 2)
    with caplog.at_level(logging.WARNING):
        assert rig.ingest.run_once() == 2
        with _index(rig).open("ab") as index:  # bytes from nowhere, mid-run
            index.write(b"\xff\xfe\x00\x93garbage\nno fields here\n,12,\n")
        rig.write(3, 4)
        counts = [rig.ingest.run_once() for _ in range(3)]
        # A setup job opens the store afresh and reads a candidate written after the damage.
        reader = Campaign(rig.plan, rig.tmp_path / "plan.json", rig.tmp_path / "ws")
        try:
            assert reader.store("latent").get(rig.namespace, "structure_4") == \
                encode(Record(np.full(8, 4)))
        finally:
            reader.close()
    assert counts == [2, 0, 0]
    damaged = [r for r in caplog.records if "damaged" in r.getMessage()]
    # One warning for this manager's store, one for the setup's: never one per tick.
    assert len(damaged) == 2, caplog.text
    assert "3 damaged line(s)" in damaged[0].getMessage()
    assert rig.rejected() == {}


def test_candidates_an_archive_lost_are_set_aside_after_read_tries(
        tar_rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig = tar_rig
    rig.write(*range(10))
    tar = rig.tmp_path / "ws" / "latent" / f"{rig.namespace}.tar"
    cut = int(_index(rig).read_bytes().splitlines()[6].rsplit(b",", 2)[1])
    rig.store.close()
    os.truncate(tar, cut + 10)  # structure_6 cut short, structure_7..9 gone from the tar
    lost = {f"structure_{i}" for i in range(6, 10)}
    with caplog.at_level(logging.WARNING, "mummi.ingest"):
        counts = [rig.ingest.run_once() for _ in range(READ_TRIES + 2)]
    assert counts == [6] + [0] * (READ_TRIES + 1)
    assert caplog.text.count("will retry") == READ_TRIES - 1
    reasons = rig.rejected()
    assert reasons.keys() == lost
    assert all("cut short" in why and f"({READ_TRIES} passes in a row)" in why
               for why in reasons.values()), reasons
    assert rig.ingest.rejected == len(lost)
    caplog.clear()
    again = rig.start({f"structure_{i}" for i in range(6)})
    with caplog.at_level(logging.WARNING, "mummi.ingest"):
        assert again.run_once() == 0
    assert caplog.text == "" and again.rejected == len(lost)
