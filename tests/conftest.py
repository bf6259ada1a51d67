"""Shared pytest setup: offline, quiet, deterministic."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest

REFDATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def refdata() -> Path:
    """The folder of published reference data and outputs, in the repository (tests/data, sources in its README)."""
    if not (REFDATA / "expected_values.json").is_file():
        pytest.fail(f"reference data not found in {REFDATA}; it is part of the repository (git checkout tests/data)")
    return REFDATA
