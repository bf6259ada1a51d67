"""Determinism on CPU: the same radiograph and the same patient give identical results across calls and
across fresh processes, with the bundled demo models.

A result that changes with the call or the process cannot be audited or reproduced, so outputs are
compared exactly (every field of ``to_dict()``), not to a tolerance.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import as_ai
from as_ai.synthetic import pelvis

PATIENT = {
    "disease_duration": 12.0, "age_at_onset": 25.0, "crp": None, "basmi": 3.0, "msasss": 10,
    "chest_expansion": 4.0, "hip_involvement": False, "peripheral_arthritis": True, "enthesitis": False,
    "bmi": 24.0, "tnf_inhibitor": True, "age": 37, "male": True,
}  # crp missing, so the imputer runs too

_SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")
import as_ai
print(json.dumps(as_ai.diagnose(sys.argv[1]).to_dict()))
print(json.dumps(as_ai.triage(json.loads(sys.argv[2])).to_dict()))
"""


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    """A synthetic pelvis saved as a 16-bit greyscale PNG."""
    ph = pelvis.sample(3, size=256)
    assert ph.image.dtype == np.uint16
    full = 2 ** int(ph.meta.get("bits_stored", 16)) - 1  # spread the detector's bits over the 16-bit range
    image = (ph.image.astype(np.uint32) * 65535 // full).astype(np.uint16)
    path = tmp_path_factory.mktemp("determinism") / "pelvis16.png"
    Image.fromarray(image).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # really 16-bit, not squeezed to 8
    return path


def _in_process(png: Path) -> tuple[dict, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = as_ai.diagnose(png).to_dict()
        t = as_ai.triage(PATIENT).to_dict()
    return json.loads(json.dumps(d)), json.loads(json.dumps(t))  # same JSON round trip as the subprocess


def _fresh_process(png: Path) -> tuple[dict, dict]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="random")
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(png), json.dumps(PATIENT)], capture_output=True,
                         text=True, env=env, timeout=240, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 2, out.stdout[-2000:]
    return json.loads(lines[0]), json.loads(lines[1])


def _key_numbers(d: dict, t: dict) -> dict:
    return {"probability": d["probability"], "members": d["members"], "basfi": t["basfi"], "basdai": t["basdai"]}


def test_same_input_same_output_across_calls(png):
    first, second = _in_process(png), _in_process(png)
    assert _key_numbers(*first) == _key_numbers(*second)
    assert first == second
    assert 0.0 <= first[0]["probability"] <= 1.0 and len(first[0]["members"]) >= 2


@pytest.mark.timeout(600)
def test_same_input_same_output_across_processes(png):
    here = _in_process(png)
    a, b = _fresh_process(png), _fresh_process(png)
    assert _key_numbers(*a) == _key_numbers(*b), "two fresh processes disagree"
    assert a == b
    assert _key_numbers(*a) == _key_numbers(*here), "a fresh process disagrees with this one"
    assert a == here
