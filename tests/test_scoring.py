"""The scoring copy of the ensemble (as_ai.scoring): BatchNorm folded, reduced precision, originals untouched."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from as_ai import scoring
from as_ai.diagnosis import Diagnoser
from as_ai.imaging import Preprocess


def _member(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = timm.create_model("test_resnet", num_classes=2)
    for mod in m.modules():  # give every BatchNorm statistics that are not the identity
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def _diagnoser() -> Diagnoser:
    members = {"a": _member(0), "b": _member(1)}
    return Diagnoser(members, archs={n: "test_resnet" for n in members}, preprocess=Preprocess(crop=96, resize_short=128))


def test_folding_batchnorm_keeps_the_function_and_the_structure():
    m = _member(0)
    x = torch.randn(4, 3, 96, 96)
    with torch.no_grad():
        before = m(x)
    folded = scoring.fold_batchnorm(m)
    with torch.no_grad():
        after = m(x)
    assert folded >= 10
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    assert torch.allclose(before, after, atol=1e-5)
    assert m.forward_features(x).shape[0] == 4   # timm's methods still work on the folded module


def test_training_mode_batchnorm_is_not_folded():
    m = _member(0).train()
    assert scoring.fold_batchnorm(m) == 0


def test_scoring_copy_matches_the_diagnoser_and_leaves_its_members_alone():
    d = _diagnoser()
    state = {k: v.clone() for k, v in d.ensemble.state_dict().items()}
    x = {96: torch.rand(3, 3, 96, 96)}
    with torch.inference_mode():
        expected = d.predict_tensor(x)[0]
    copy32, used = scoring.scoring_ensemble(d, "float32")
    assert used == "float32" and scoring.scoring_ensemble(d, "float32")[0] is copy32   # built once
    np.testing.assert_allclose(scoring.score(d, copy32, x), expected, atol=1e-5)
    copy16, _ = scoring.scoring_ensemble(d, "bfloat16")
    np.testing.assert_allclose(scoring.score(d, copy16, x), expected, atol=0.02)
    for k, v in d.ensemble.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_auto_precision_is_bfloat16_only_where_native():
    cpu = torch.device("cpu")
    assert scoring.resolve_precision("float32", cpu) == "float32"
    assert scoring.resolve_precision("auto", cpu) == ("bfloat16" if scoring._native_bf16(cpu) else "float32")
    with pytest.raises(ValueError, match="precision"):
        scoring.resolve_precision("fp8", cpu)
