"""Every defect in tests/errors/ gets its exact, located message and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mummi_spec.cli import main
from tests.golden import assert_matches_golden

CASES = Path(__file__).parent / "errors"
NAMES = sorted(p.stem for p in CASES.glob("*.yaml"))


@pytest.mark.parametrize("name", NAMES)
def test_defect_message(name, capsys, monkeypatch, update_golden):
    monkeypatch.chdir(CASES)
    monkeypatch.delenv("NEURO_INPUT_DIR_UNSET", raising=False)
    code = main(["validate", f"{name}.yaml"])
    err = capsys.readouterr().err
    assert code == (0 if name.startswith("warn-") else 2), err
    assert "Traceback" not in err
    assert_matches_golden({f"{name}.expected": err}, CASES, update_golden) if update_golden \
        else _compare(name, err)


def _compare(name: str, err: str) -> None:
    expected = (CASES / f"{name}.expected").read_text(encoding="utf-8")
    assert err == expected


def test_every_case_has_expected_output():
    missing = [n for n in NAMES if not (CASES / f"{n}.expected").exists()]
    assert not missing, f"run pytest --update-golden to create: {missing}"
