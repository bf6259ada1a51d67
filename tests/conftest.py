"""Shared pytest setup: offline, quiet, deterministic."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
REFDATA = SHARED / "refdata"


@pytest.fixture(scope="session")
def refdata() -> Path:
    """The folder of published reference outputs (../shared/refdata)."""
    if not REFDATA.is_dir():
        pytest.fail(f"reference data not found at {REFDATA}; the checkout needs ../shared beside it")
    return REFDATA
