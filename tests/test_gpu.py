"""On a CUDA GPU: the members run there and give the CPU's answers; training runs there in bf16.

Skipped without a GPU (CI has none). On a GPU machine: ``python -m pytest -q -m gpu tests/test_gpu.py``.
The GPU's convolutions use TF32, so probabilities agree to about 1e-3, not bit for bit.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from as_ai.cli import main
from as_ai.diagnosis import Diagnoser
from as_ai.explain import gradcam, lime_with_features
from as_ai.hub import default_model_id
from as_ai.synthetic.datasets import write_pxr_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

def _load() -> Diagnoser:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(default_model_id("diagnosis"))


@pytest.fixture(scope="module")
def pair() -> tuple[Diagnoser, Diagnoser]:
    return _load(), _load().to("cuda")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Phantom radiographs as the data engine writes them: external centres (AS and not) and phone photos."""
    out = tmp_path_factory.mktemp("pxr")
    write_pxr_dataset(out, n=20, seed=3, size=512)
    files = [out / split / name for split in ("external", "external_phone")
             for name in pd.read_csv(out / split / "metadata.csv")["file_name"]]
    return files[:6]


def test_batch_diagnosis_on_the_gpu_gives_the_cpu_results(pair, images):
    cpu, gpu = pair
    assert gpu.device.type == "cuda" and cpu.device.type == "cpu"
    a, b = cpu.diagnose_batch(images, batch_size=2), gpu.diagnose_batch(images, batch_size=2)
    pa, pb = np.array([d.probability for d in a]), np.array([d.probability for d in b])
    np.testing.assert_allclose(pb, pa, atol=1e-2)
    far = np.abs(pa - cpu.threshold) > 0.02
    assert [d.label for d, f in zip(b, far) if f] == [d.label for d, f in zip(a, far) if f]
    for x, y in zip(a, b):
        assert x.check.in_distribution == y.check.in_distribution
        np.testing.assert_allclose(list(y.members.values()), list(x.members.values()), atol=1e-2)
    np.testing.assert_allclose(gpu.predict_proba(images), pa, atol=1e-2)


def test_explanations_on_the_gpu_match_the_cpu(pair, images):
    cpu, gpu = pair
    probs = cpu.predict_proba(images)
    top = images[int(np.argmax(probs))]                             # the likeliest AS: a map with a signal
    ha, hb = gradcam(cpu, top).heatmap, gradcam(gpu, top).heatmap
    assert ha.max() > 0.5 and np.corrcoef(ha.ravel(), hb.ravel())[0, 1] > 0.99
    _, fa, _ = lime_with_features(cpu, images[2], num_samples=40)
    _, fb, _ = lime_with_features(gpu, images[2], num_samples=40)
    np.testing.assert_allclose(fb, fa, rtol=0.05, atol=1e-2)


def test_cli_runs_the_members_on_the_gpu(pair, images, capsys):
    cpu, _ = pair
    assert main(["diagnose", *map(str, images), "--json", "--no-progress", "--device", "cuda"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = [d.probability for d in cpu.diagnose_batch(images)]
    np.testing.assert_allclose([r["probability"] for r in out], ref, atol=1e-2)


def test_training_on_the_gpu_uses_bf16_and_worker_processes(tmp_path):
    from train import diagnosis as train_diag

    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("external", 12)):
        folder = tmp_path / "data" / split
        folder.mkdir(parents=True)
        rows = []
        for i in range(n):
            img = rng.normal(0.4, 0.05, (80, 72))
            img[30:50, 20:50] += 0.35 * (i % 2)
            Image.fromarray((np.clip(img, 0, 1) * 65535).astype(np.uint16)).save(folder / f"{i:03d}.png")
            rows.append({"file_name": f"{i:03d}.png", "label": ["non-AS", "AS"][i % 2]})
        pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    config = {"name": "gpu", "archs": ["mobilenetv3_small_050", "resnet18"], "folds": 2, "top_k": 2, "epochs": 2,
              "batch_size": 8, "final": "best_fold", "augment": "centred", "loader_workers": 2,
              "acquisition_jitter": 0.5, "eval_splits": ["external"],
              "preprocess": {"resize_short": 72, "crop": 64, "train_resize_short": 72, "train_crop": 64}}
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(config))
    assert train_diag.main(["--config", str(tmp_path / "gpu.yaml"), "--data", str(tmp_path / "data"),
                            "--out", str(tmp_path / "run")]) == 0
    training = json.loads(Path(tmp_path / "run" / "model" / "as_ai.json").read_text())["training"]
    assert training["device"].startswith("cuda") and training["mixed_precision"] == "bf16"
    assert all(v > 0 for v in training["throughput_img_per_s"].values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Diagnoser.from_pretrained(tmp_path / "run" / "model")      # saved from the GPU, loads on the CPU
    assert d.device.type == "cpu" and 0.0 <= d(np.full((80, 72), 0.5, np.float32)).probability <= 1.0
