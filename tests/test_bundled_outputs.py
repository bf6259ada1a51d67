"""The bundled demo models give the same answers, to 1e-6, as when these outputs were pinned.

A refactor may move code anywhere; it must not change what a user gets. ``tests/data/bundled_outputs.json``
holds the outputs of the bundled diagnosis and triage models on fixed inputs (phantom radiographs as
16-bit PNG bytes and as float arrays, a simulated phone photo, one patient), written by
``python tests/test_bundled_outputs.py --write`` from the code of 2026-12-08 (re-pinned when the bundled diagnosis
model began reading both joints through its cross-view rule; before that, 2026-12-07, as-ai main fd1b2bb).
Rewrite it only when a change of outputs is intended, and say so in the commit.
"""
from __future__ import annotations

import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PINNED = ROOT / "tests" / "data" / "bundled_outputs.json"
TOL = 1e-6


def _inputs() -> dict[str, object]:
    from PIL import Image

    from as_ai.synthetic import pelvis, phone

    out: dict[str, object] = {}
    for seed, center in ((1, "A"), (4, "B"), (5, "C"), (12, "D")):
        ph = pelvis.sample(seed, center=center, size=512)
        top = 2 ** int(ph.meta.get("bits_stored", 16)) - 1
        buf = io.BytesIO()
        Image.fromarray((ph.image.astype(np.uint32) * 65535 // top).astype(np.uint16)).save(buf, format="png")
        out[f"png16_seed{seed}"] = buf.getvalue()
        out[f"float_seed{seed}"] = (ph.image.astype(np.float64) / top).astype(np.float32)
    ph = pelvis.sample(2, size=512)
    buf = io.BytesIO()
    Image.fromarray(phone.photograph(ph.image, level=2, seed=2)).convert("RGB").save(buf, format="jpeg", quality=88)
    out["photo_seed2"] = buf.getvalue()
    return out


def _patient(triager) -> dict[str, object]:
    patient: dict[str, object] = {}
    for f in triager.schema.features:
        if f.imputable:
            patient[f.name] = None
        elif f.type == "bool":
            patient[f.name] = "yes"
        else:
            patient[f.name] = float(round((f.min + f.max) / 2)) if f.type == "int" else (f.min + f.max) / 2
    return patient


def _portable(sides: dict) -> dict:
    """A joint reading with its reader named by content hash only (the folder differs between checkouts)."""
    return {**sides, "model": str(sides.get("model", "")).rsplit("@", 1)[-1]}


def current_outputs() -> dict[str, object]:
    """What the bundled models answer on the fixed inputs now."""
    from as_ai import explain as ex
    from as_ai.clinical import Triager
    from as_ai.diagnosis import Diagnoser
    from as_ai.hub import DEMO_DIR

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Diagnoser.from_pretrained(DEMO_DIR / "diagnosis")
        t = Triager.from_pretrained(DEMO_DIR / "triage")
    out: dict[str, object] = {}
    for name, src in _inputs().items():
        r = d(src)
        out[name] = {"label": r.label, "probability": r.probability, "members": dict(r.members),
                     "spread": r.spread, "gate_score": r.check.score, "reasons": list(r.check.reasons),
                     "sides": None if r.sides is None else _portable(r.sides.to_dict())}
    png = _inputs()["png16_seed1"]
    cam = ex.gradcam(d, png)
    out["gradcam_seed1"] = {"probability": cam.probability, "sum": float(cam.heatmap.sum()),
                            "argmax": int(np.argmax(cam.heatmap))}
    lime = ex.lime(d, png, num_samples=120, precision="float32", seed=3)
    out["lime_seed1"] = {"probability": lime.probability, "weights": [float(w) for w in lime.weights]}
    tr = t(_patient(t)).to_dict()
    out["triage"] = {k: tr[k] for k in ("basfi", "basdai", "risk", "groups", "intervals")}
    return out


def _compare(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))} differ"]
        return [m for k in a for m in _compare(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items, pinned {len(b)}"]
        return [m for i, (x, y) in enumerate(zip(a, b)) for m in _compare(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or abs(float(a) - float(b)) > TOL:
            return [f"{path}: {a!r}, pinned {b!r}"]
        return []
    return [] if a == b else [f"{path}: {a!r}, pinned {b!r}"]


def test_bundled_models_answer_as_pinned():
    now = json.loads(json.dumps(current_outputs()))
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    problems = _compare(now, pinned)
    assert not problems, "outputs moved:\n" + "\n".join(problems[:20])


if __name__ == "__main__" and "--write" in sys.argv:
    PINNED.write_text(json.dumps(current_outputs(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {PINNED}")
