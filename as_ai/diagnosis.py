"""Radiograph -> P(ankylosing spondylitis): the :class:`Diagnoser` and :func:`diagnose`.

A :class:`Diagnoser` holds an :class:`~as_ai.ensemble.Ensemble` of timm CNNs plus everything the
model repository says about using them: preprocessing, combine rule, calibration, decision threshold
and provenance. Its result, :class:`Diagnosis`, carries the calibrated ensemble probability, the label,
the threshold applied, every member's probability, their spread, the input check and the model's
provenance.

``Diagnosis.members`` holds each member's **own** softmax P(AS), before the ensemble calibration
(the calibration is fitted on the combined probability, so it does not apply to single members);
``spread`` is the standard deviation of those member probabilities. ``probability`` is the combined
(mean or AUC-weighted mean) member probability mapped through the calibration.

Inference path (what makes it fast): images are decoded once, on worker threads one batch ahead of the
model (PIL releases the GIL), batched and preprocessed on tensors (:func:`as_ai.transforms.to_model_input`,
no per-image PIL), members that share an input size share one preprocessed batch, all members run in one
``Ensemble`` call under ``torch.inference_mode`` on channels-last tensors, and the photo-quality checks
run on the worker threads during the forward pass. Torch's own thread count is left as the user set it
(``torch.set_num_threads``; ``as-ai diagnose --threads``).
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from . import hub
from ._repo_io import (FORMAT_VERSION, MEMBER_CONFIG, WEIGHTS_NAME, check_member_name, default_card, load_member,
                       member_config, save_member, write_config)
from .ensemble import Calibration, Ensemble, combine_weights
from .errors import ModelLoadError
from .exposure import ExposureCheck, check_exposure
from .decoding import load_radiograph
from .radiograph import Radiograph
from .quality import InputCheck, InputGate, build_check, check_photo, may_be_camera_picture, no_gate_warning
from .transforms import Preprocess, photo_stretch_from_config, photo_view, scaled_for_size, to_model_input

LABELS = ("non-AS", "AS")
EXPLAIN_METHODS = ("gradcam", "lime")
INDETERMINATE = "indeterminate"
SOFTNESS_CAUTION_RISE = 0.05  # rise of the non-AS mean P(AS) under the softness test that earns a caution

__all__ = ["Diagnosis", "Diagnoser", "diagnose", "LABELS", "EXPLAIN_METHODS"]


# ------------------------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class Diagnosis:
    """What the ensemble says about one radiograph.

    Attributes:
        probability: calibrated ensemble P(AS) in [0, 1].
        label: ``"AS"`` (probability >= threshold), ``"non-AS"``, or ``"indeterminate"`` when the input
            check found the image unlike the training data (the model abstains; probability is still given).
        threshold: the decision threshold applied (from the model repository).
        members: member name -> that member's own (uncalibrated) softmax P(AS).
        spread: standard deviation of the member probabilities (disagreement between members).
        check: the :class:`~as_ai.quality.InputCheck` of the image.
        explanation: an ``as_ai.explain`` explanation when asked for, else None.
        model: provenance of the model ("org/name@<commit>" or "<path>@<content hash>").
        image: how the image was read (``Radiograph.to_dict()``: format, size, bits stored and whether
            inferred, photometric interpretation, the loader's warnings); never patient identifiers.

    Example:
        >>> from as_ai.quality import InputCheck
        >>> d = Diagnosis(0.9, "AS", 0.5, {"a": 0.9}, 0.0, InputCheck(), None, "demo@abc")
        >>> d.finding.startswith("Findings suggest ankylosing spondylitis")
        True
    """

    probability: float
    label: str
    threshold: float
    members: dict[str, float]
    spread: float
    check: InputCheck
    explanation: Any = None
    model: str = ""
    image: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def finding(self) -> str:
        """One sentence for clinicians; it describes findings, it never states a diagnosis."""
        if self.label == "AS":
            return ("Findings suggest ankylosing spondylitis (radiographic sacroiliitis): "
                    f"model probability {self.probability:.2f}, at or above its threshold {self.threshold:.2f}. "
                    "Confirm with a radiologist or rheumatologist.")
        if self.label == "non-AS":
            return ("No radiographic signs of ankylosing spondylitis found by the model: "
                    f"model probability {self.probability:.2f}, below its threshold {self.threshold:.2f}. "
                    "This does not rule out axial spondyloarthritis (early disease may not show on radiographs).")
        why = "; ".join(self.check.reasons) or "the image does not look like the radiographs it was trained on"
        return f"The model gives no finding for this image: {why}."

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (explanation via its own ``to_dict()`` when it has one)."""
        expl = self.explanation
        if expl is not None and hasattr(expl, "to_dict"):
            expl = expl.to_dict()
        return {
            "probability": float(self.probability),
            "label": self.label,
            "finding": self.finding,
            "threshold": float(self.threshold),
            "members": {str(k): float(v) for k, v in self.members.items()},
            "spread": float(self.spread),
            "check": self.check.to_dict(),
            "explanation": expl,
            "image": dict(self.image),
            "model": self.model,
        }


# --------------------------------------------------------------------------------------------- diagnoser
class Diagnoser:
    """A loaded diagnosis ensemble: preprocessing, members, combine rule, calibration and threshold.

    Load one with :meth:`from_pretrained`; build one from trained members with the constructor (the
    training script does) and write it with :meth:`save_pretrained`.

    Args:
        members: name -> timm model (two outputs: non-AS, AS); names become folder names.
        archs: name -> timm architecture name of the member.
        preprocess: the eval preprocessing shared by the members (a member whose ``input_sizes`` entry
            differs from ``preprocess.crop`` gets the same preprocessing scaled to its size).
        input_sizes: name -> square input size; defaults to ``preprocess.crop`` for every member.
        weights: name -> weight in the combined probability (default: equal).
        cv_aucs: name -> mean cross-validated AUC (recorded in ``as_ai.json``).
        combine: ``"mean"`` or ``"auc_weighted"`` (documentation of how ``weights`` were set).
        calibration: map of the combined probability (default: identity).
        threshold: decision threshold on the calibrated probability.
        config: the rest of ``as_ai.json`` (metrics, training provenance).
        gate: the input gate (:class:`~as_ai.quality.InputGate`) fitted on this ensemble's features, or None.
        provenance: where the model came from (set by :meth:`from_pretrained`).

    Example:
        >>> d = Diagnoser.from_pretrained("as_ai/demo_models/diagnosis")   # doctest: +SKIP
        >>> d("pelvis.png").label                                          # doctest: +SKIP
        'non-AS'
    """

    def __init__(self, members: Mapping[str, torch.nn.Module], *, archs: Mapping[str, str],
                 preprocess: Preprocess, input_sizes: Mapping[str, int] | None = None,
                 weights: Mapping[str, float] | None = None, cv_aucs: Mapping[str, float | None] | None = None,
                 combine: str = "mean", calibration: Calibration | None = None, threshold: float = 0.5,
                 config: Mapping[str, Any] | None = None, gate: InputGate | None = None,
                 provenance: str = "unsaved") -> None:
        for name in members:
            check_member_name(name)
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        names = list(members)
        self.preprocess = preprocess
        sizes = {n: int((input_sizes or {}).get(n, preprocess.crop)) for n in names}
        if weights is None:
            aucs = [(cv_aucs or {}).get(n) or 0.5 for n in names]
            weights = dict(zip(names, combine_weights(combine, aucs)))
        self.ensemble = Ensemble(members, input_sizes=sizes, weights=weights).eval()
        self.ensemble.to(memory_format=torch.channels_last)
        self.archs = {n: str(archs[n]) for n in names}
        self.cv_aucs = {n: (None if (cv_aucs or {}).get(n) is None else float(cv_aucs[n])) for n in names}
        self.combine = combine
        self.calibration = calibration or Calibration("none")
        self.threshold = float(threshold)
        self.config: dict[str, Any] = dict(config or {})
        self.gate = gate
        self.provenance = provenance
        self.resolved: hub.ResolvedModel | None = None  # set by from_pretrained
        self._pool: ThreadPoolExecutor | None = None     # decoding and photo checks overlap the forward pass
        self._preprocess_by_size = {s: scaled_for_size(preprocess, s) for s in self.ensemble.sizes}
        photo_stretch_from_config(self.config.get("photo_input"))  # a bad entry fails here, at load

    # ---------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, model_id: str | os.PathLike, revision: str | None = None) -> "Diagnoser":
        """Load a diagnosis repository (local folder or Hub repo id), verified by :mod:`as_ai.hub`.

        Every file's sha256 is checked against ``as_ai.json["files"]`` before any weight is read.

        Raises:
            ModelLoadError: not found, not a diagnosis repo, unsupported version, checksum mismatch,
                unknown architecture or weights that do not fit it.

        Example:
            >>> from as_ai.hub import default_model_id
            >>> Diagnoser.from_pretrained(default_model_id("diagnosis")).labels
            ('non-AS', 'AS')
        """
        resolved = hub.resolve_model(model_id, revision, kind="diagnosis")
        cfg = resolved.config
        mid = resolved.model_id

        def bad(msg: str) -> ModelLoadError:
            return ModelLoadError(f"as_ai.json of {mid!r}: {msg}", model_id=mid, revision=revision)

        if list(cfg.get("labels", LABELS)) != list(LABELS):
            raise bad(f"labels must be {list(LABELS)}, got {cfg.get('labels')!r}")
        entries = cfg.get("members")
        if not isinstance(entries, list) or not entries:
            raise bad("'members' must be a non-empty list")
        listed = set(cfg.get("files", {}))
        members, archs, sizes, weights, aucs = {}, {}, {}, {}, {}
        for entry in entries:
            try:
                name, rel = check_member_name(entry["name"]), str(entry["path"])
            except (KeyError, TypeError, ValueError) as exc:
                raise bad(f"member entry {entry!r} is invalid ({exc})") from exc
            for needed in (f"{rel}/{WEIGHTS_NAME}", f"{rel}/{MEMBER_CONFIG}"):
                if needed not in listed:
                    raise bad(f"{needed} is not listed in 'files' with a checksum; refusing unverified weights")
            model, mcfg = load_member(resolved.path / rel, model_id=mid, revision=revision)
            if entry.get("arch") not in (None, mcfg["architecture"]):
                raise bad(f"member {name!r} says arch {entry.get('arch')!r} but its config.json says "
                          f"{mcfg['architecture']!r}")
            if int(mcfg["num_classes"]) != len(LABELS):
                raise bad(f"member {name!r} has {mcfg['num_classes']} classes; diagnosis members need 2")
            members[name], archs[name] = model, mcfg["architecture"]
            sizes[name] = int(mcfg.get("pretrained_cfg", {}).get("input_size", [3, 0, 0])[-1]) or None
            weights[name] = float(entry.get("weight", 1.0))
            aucs[name] = entry.get("cv_auc")
        preprocess = Preprocess.from_dict(cfg.get("preprocess", {}))
        sizes = {n: s or preprocess.crop for n, s in sizes.items()}
        gate_entry = cfg.get("input_gate") or None
        if gate_entry and gate_entry.get("file") not in listed:
            raise bad(f"input gate file {gate_entry.get('file')!r} is not listed in 'files' with a checksum")
        try:
            calibration = Calibration.from_dict(cfg.get("calibration"))
            threshold = float(cfg.get("threshold", 0.5))
            gate = InputGate.from_config(resolved.path, gate_entry)
            self = cls(members, archs=archs, preprocess=preprocess, input_sizes=sizes, weights=weights,
                       cv_aucs=aucs, combine=cfg.get("combine", "mean"), calibration=calibration,
                       threshold=threshold, config=cfg, gate=gate, provenance=resolved.provenance)
        except (TypeError, ValueError, KeyError, OSError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from exc
        if gate is None:
            no_gate_warning(resolved.provenance)
        self.resolved = resolved
        return self

    def save_pretrained(self, folder: str | os.PathLike, *, card: str | None = None,
                        dtype: torch.dtype = torch.float16) -> Path:
        """Write the repository layout of DESIGN.md to ``folder`` and return its path.

        Members go to ``members/<name>/`` in timm format (``config.json`` + ``model.safetensors``, float16
        by default: half the size, probabilities change by ~1e-3 at most), then ``as_ai.json`` with the
        sha256 of every file, then ``README.md`` (``card``, or a short generated card).
        The input gate, when there is one, is written as ``input_gate.safetensors``.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        p = self.preprocess
        entries, hashed = [], []
        for i, name in enumerate(self.ensemble.names):
            module = self.ensemble.members[f"m{i}"]
            size = self.ensemble.input_sizes[name]
            ps = scaled_for_size(p, size)
            mcfg = member_config(module, arch=self.archs[name], input_size=size, mean=p.mean, std=p.std,
                                 crop_pct=ps.crop / ps.resize_short, label_names=LABELS)
            rel = f"members/{name}"
            save_member(folder / rel, module, mcfg, dtype=dtype)
            hashed += [f"{rel}/{WEIGHTS_NAME}", f"{rel}/{MEMBER_CONFIG}"]
            entries.append({"name": name, "arch": self.archs[name], "path": rel,
                            "weight": float(self.ensemble.weights[i]), "cv_auc": self.cv_aucs[name]})
        gate_entry: dict[str, Any] = {}
        if self.gate is not None:
            gate_entry = self.gate.save(folder)
            hashed.append(str(gate_entry["file"]))
        cfg: dict[str, Any] = {
            "kind": "diagnosis",
            "format_version": FORMAT_VERSION,
            "labels": list(LABELS),
            "members": entries,
            "combine": self.combine,
            "preprocess": p.to_dict(),
            "calibration": self.calibration.to_dict(),
            "threshold": self.threshold,
            "input_gate": gate_entry,
            "metrics": self.config.get("metrics", {}),
            "training": self.config.get("training", {}),
        }
        for key, value in self.config.items():  # keep extra entries written by newer tools
            if key not in cfg and key != "files":
                cfg[key] = value
        self.config = write_config(folder, cfg, hashed=hashed)
        (folder / "README.md").write_text(card if card is not None else default_card(self.config), encoding="utf-8")
        return folder

    # -------------------------------------------------------------------------------------- inference
    @property
    def labels(self) -> tuple[str, str]:
        """Class labels, index 1 is AS."""
        return LABELS

    @property
    def synthetic(self) -> bool:
        """True when the repository says it was trained on synthetic (phantom) data."""
        return bool(self.config.get("training", {}).get("synthetic", False))

    @property
    def photo_stretch(self) -> tuple[float, float] | None:
        """Percentiles of a photo of a screen mapped to 0 and 1 before reading (``as_ai.json["photo_input"]``),
        or None: photos are read as they are."""
        return photo_stretch_from_config(self.config.get("photo_input"))

    @property
    def photo_caution(self) -> str:
        """What a result on a photo of a screen carries: photos are read less reliably, with this model's
        own figures when its evaluation measured them (external phantoms vs phone photos of them)."""
        m = self.config.get("metrics", {})
        clean = m.get("external", {}).get("true", {}).get("auc")
        phone = m.get("external_phone", {}).get("true", {}).get("auc")
        spec = m.get("external_phone", {}).get("true", {}).get("specificity")
        over = (f", and only {100 * spec:.0f} % of photos without AS were read as non-AS"
                if spec is not None and spec < 0.8 else "")
        measured = (f" (in this model's evaluation: AUC {phone:.2f} on phone photos against {clean:.2f} on the "
                    f"original files{over})") if clean is not None and phone is not None else ""
        stretched = (" Its contrast was stretched to the full range before reading, which undoes part of the "
                     "screen's black level and glare.") if self.photo_stretch else ""
        return ("This looks like a photo of a screen. The model reads photos less reliably than the original "
                f"file{measured}; use the original DICOM or PNG when you can.{stretched}")

    @property
    def softness_caution(self) -> str | None:
        """What a result on a blurred image carries when this model's evaluation found that softer images read
        as more likely AS (``metrics.external_softness`` of ``as_ai.json``), else None."""
        rows = self.config.get("metrics", {}).get("external_softness", {}).get("rows") or []
        try:
            base, soft = rows[0], rows[-1]
            rise = float(soft["mean_prob_non_as"]) - float(base["mean_prob_non_as"])
        except (IndexError, KeyError, TypeError, ValueError):
            return None
        if len(rows) < 2 or rise <= SOFTNESS_CAUTION_RISE:
            return None
        return ("This model reads softer images as more likely AS: in its evaluation, blurring the external "
                f"radiographs by {float(soft['sigma']):g} px raised the mean P(AS) of those without AS from "
                f"{float(base['mean_prob_non_as']):.2f} to {float(soft['mean_prob_non_as']):.2f}. On a blurred "
                "image like this one, a finding of AS is less certain than its probability says.")

    def model_views(self, images: Sequence[Radiograph | np.ndarray], photos: Sequence[Any] | None = None
                    ) -> list[Radiograph]:
        """The radiographs as the members read them: a photo of a screen contrast-stretched when the model
        says so (``as_ai.json["photo_input"]["contrast_stretch"]``: percentiles mapped to 0 and 1).

        ``photos`` are the images' photo checks when already made; otherwise images that may be camera
        pictures (8-bit, not DICOM) are checked here. Everything else is returned unchanged.
        """
        rgs = [im if isinstance(im, Radiograph) else load_radiograph(im) for im in images]
        if self.photo_stretch is None:
            return rgs
        out = []
        for i, rg in enumerate(rgs):
            if "contrast_stretched" in rg.meta:  # already the model's view
                out.append(rg)
                continue
            photo = photos[i] if photos is not None else (
                _image_checks(rg, False)[0] if may_be_camera_picture(rg.meta) else None)
            out.append(photo_view(rg, self.photo_stretch, photo is not None and photo.is_photo))
        return out

    def set_preprocess(self, preprocess: Preprocess) -> None:
        """Read images with ``preprocess`` from now on (every member size scaled from it); for tools that
        re-fit a model's view, such as ``python -m train.intensity``."""
        self.preprocess = preprocess
        self._preprocess_by_size = {s: scaled_for_size(preprocess, s) for s in self.ensemble.sizes}

    @property
    def preprocess_by_size(self) -> dict[int, Preprocess]:
        """The view each member input size reads (``preprocess`` scaled to that size): what explanations use."""
        return dict(self._preprocess_by_size)

    def model_input(self, images: Sequence[Radiograph | np.ndarray]) -> dict[int, torch.Tensor]:
        """Preprocess radiographs into one channels-last batch per member input size (size -> N×3×s×s)."""
        return {s: to_model_input(images, pp).contiguous(memory_format=torch.channels_last)
                for s, pp in self._preprocess_by_size.items()}

    @property
    def device(self) -> torch.device:
        """Where the members run (``cpu`` unless moved with :meth:`to`)."""
        return self.ensemble.device

    def to(self, device: str | torch.device) -> "Diagnoser":
        """Run the members on ``device`` (e.g. ``"cuda"``); results come back on the CPU as before.

        Preprocessing, image checks and explanations' bookkeeping stay on the CPU; only the forward
        passes move. Returns ``self``, so ``Diagnoser.from_pretrained(...).to("cuda")`` reads naturally.

        Raises:
            ValueError: ``device`` is not a device name torch knows, or names a GPU torch cannot see.
        """
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"unknown device {device!r} ({exc}); use 'cpu', 'cuda' or 'cuda:N'") from None
        if dev.type == "meta":
            raise ValueError("device 'meta' holds no weights; use 'cpu', 'cuda' or 'cuda:N'")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: torch sees no CUDA GPU here; use 'cpu'")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
        try:
            self.ensemble.to(dev)
        except (RuntimeError, AssertionError) as exc:   # e.g. "mps" on a machine without it
            self.ensemble.to("cpu")
            raise ValueError(f"device {device!r} cannot be used here ({exc}); use 'cpu'") from None
        return self

    def predict_tensor(self, x: torch.Tensor | Mapping[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(calibrated ensemble P(AS) ``N``, member P(AS) ``N×M``) for preprocessed input; keeps gradients.

        Use inside ``torch.inference_mode()`` for speed, or with gradients for explanations. The input may
        live anywhere; the results come back on the input's device.
        """
        home = (x if isinstance(x, torch.Tensor) else next(iter(x.values()))).device
        member_probs = self.ensemble(x)
        prob = self.calibration.apply_tensor(self.ensemble.combine(member_probs))
        return prob.to(home), member_probs.to(home)

    def features(self, images: Sequence[Radiograph | np.ndarray]) -> np.ndarray:
        """The penultimate features (N×D, float32) the input gate scores: fit a gate on these.

        Every member's pooled pre-logit vector, concatenated in member order, for eval-preprocessed images.
        """
        with torch.inference_mode():
            return self.ensemble.forward_with_features(self.model_input(self.model_views(images)))[1].cpu().numpy()

    def predict_proba(self, images: Sequence[Any], *, batch_size: int = 16) -> np.ndarray:
        """Calibrated P(AS) for many images (paths, arrays, Radiographs...), as a float64 array.

        A light path for perturbation-based explanations and evaluation: no input checks, no results.
        """
        out = [self._forward(self.model_views(rgs))[0] for rgs in self._loaded_chunks(images, batch_size)]
        return np.concatenate(out) if out else np.zeros(0)

    def __call__(self, src: Any, *, explain: str | None = None,
                 explain_options: Mapping[str, Any] | None = None) -> Diagnosis:
        """Diagnose one radiograph (path, bytes, file object, PIL image, numpy array, DICOM, Radiograph).

        ``explain_options`` go to the explanation method (e.g. LIME's ``num_samples`` or ``progress``).

        Raises:
            InvalidImageError: the input cannot be read as a radiograph.
            ValueError: ``explain`` is not None, "gradcam" or "lime".
            NotImplementedError: explanations are asked for but ``as_ai.explain`` is not installed.

        Example:
            >>> import numpy as np
            >>> d = Diagnoser.from_pretrained(hub.default_model_id("diagnosis"))
            >>> d(np.random.default_rng(0).random((256, 256), dtype=np.float32)).label in ("AS", "non-AS", "indeterminate")
            True
        """
        explainer = _explainer(explain)
        rg = load_radiograph(src)
        result = self._diagnose_loaded([rg])[0]
        if explainer is not None:  # explains the pixels the members read
            view = self.model_views([rg], [result.check.photo])[0]
            result = dataclasses.replace(result, explanation=explainer(self, view, method=explain,
                                                                       **dict(explain_options or {})))
        return result

    def diagnose_batch(self, srcs: Iterable[Any], *, batch_size: int = 16, progress: bool = False) -> list[Diagnosis]:
        """Diagnose many radiographs, ``batch_size`` at a time, in input order.

        Raises:
            InvalidImageError: one of the inputs cannot be read (load them with ``load_radiograph`` first
                to skip bad files yourself).
            ValueError: ``batch_size`` < 1.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        srcs = list(srcs)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(srcs), unit="img", desc="diagnose")
        results: list[Diagnosis] = []
        try:
            for rgs in self._loaded_chunks(srcs, batch_size):
                results += self._diagnose_loaded(rgs)
                if bar is not None:
                    bar.update(len(rgs))
        finally:
            if bar is not None:
                bar.close()
        return results

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1)),
                                            thread_name_prefix="as-ai-diagnose")
        return self._pool

    def _loaded_chunks(self, srcs: Iterable[Any], n: int) -> Iterable[list[Radiograph]]:
        """Radiographs in chunks of ``n``, decoded on worker threads one chunk ahead (PIL releases the GIL)."""
        chunks = list(_chunks(list(srcs), n))
        if not chunks:
            return
        pool = self._executor()
        pending = [pool.submit(load_radiograph, s) for s in chunks[0]]
        for k in range(len(chunks)):
            current = pending
            pending = [pool.submit(load_radiograph, s) for s in chunks[k + 1]] if k + 1 < len(chunks) else []
            yield [f.result() for f in current]  # re-raises InvalidImageError in input order

    def _forward(self, rgs: Sequence[Radiograph], *, features: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        with torch.inference_mode():
            x = self.model_input(rgs)
            if features:
                members, feats = self.ensemble.forward_with_features(x)
            else:
                members, feats = self.ensemble(x), None
            prob = self.calibration.apply_tensor(self.ensemble.combine(members))
        return (prob.double().cpu().numpy(), members.double().cpu().numpy(),
                None if feats is None else feats.cpu().numpy())

    def _diagnose_loaded(self, rgs: Sequence[Radiograph]) -> list[Diagnosis]:
        image_part = self.gate is not None and "image" in self.gate.parts
        jobs = [self._executor().submit(_image_checks, rg, image_part, self.preprocess)  # during the forward pass
                for rg in rgs]
        views = rgs
        if self.photo_stretch is not None and any(may_be_camera_picture(rg.meta) for rg in rgs):
            views = self.model_views(rgs, [j.result()[0] for j in jobs])  # a photo is read stretched: check first
        probs, member_probs, feats = self._forward(views, features=self.gate is not None)
        out = []
        for i, (rg, p, mp) in enumerate(zip(rgs, probs, member_probs)):
            named = {n: float(v) for n, v in zip(self.ensemble.names, mp)}
            photo, descriptor, exposure = jobs[i].result()
            notes = list(rg.warnings) + ([self.photo_caution] if photo is not None and photo.is_photo else [])
            if photo is not None and "blur" in photo.issues and self.softness_caution:
                notes.append(self.softness_caution)
            check = build_check(gate=self.gate, features=None if feats is None else feats[i],
                                photo=photo, member_probs=named, threshold=self.threshold,
                                extra_reasons=notes, pixels=rg.pixels, descriptor=descriptor, exposure=exposure)
            label = INDETERMINATE if not check.in_distribution else ("AS" if p >= self.threshold else "non-AS")
            out.append(Diagnosis(
                probability=float(p), label=label, threshold=self.threshold,
                members=named,
                spread=float(np.std(mp)) if len(mp) > 1 else 0.0, check=check, explanation=None,
                model=self.provenance, image=rg.to_dict()))
        return out

    def __repr__(self) -> str:
        members = ", ".join(f"{n}={self.archs[n]}" for n in self.ensemble.names)
        return f"Diagnoser({members}; combine={self.combine!r}, threshold={self.threshold:.3f}, {self.provenance})"


# ------------------------------------------------------------------------------------------- functional
def diagnose(src: Any, model: str | os.PathLike | None = None, revision: str | None = None,
             explain: str | None = None) -> Diagnosis:
    """Diagnose one radiograph with a cached :class:`Diagnoser`.

    ``model=None`` uses ``AS_AI_DIAGNOSIS_MODEL`` or else the bundled phantom-trained demo ensemble,
    which warns once (:class:`~as_ai.errors.SyntheticModelWarning`) that it is not for clinical use.
    Loaded models are kept per (model, revision); :func:`as_ai.clear_cache` forgets them.

    Raises:
        InvalidImageError: ``src`` cannot be read as a radiograph.
        ModelLoadError: the model cannot be found or verified.
        ValueError: unknown ``explain`` method.

    Example:
        >>> import as_ai, numpy as np, warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     d = as_ai.diagnose(np.zeros((256, 256), np.uint8))
        >>> 0.0 <= d.probability <= 1.0
        True
    """
    _explainer(explain)  # fail fast, before loading anything
    model_id = os.fspath(model) if model is not None else hub.default_model_id("diagnosis")
    diagnoser = hub.cached("diagnosis", model_id, revision, lambda: Diagnoser.from_pretrained(model_id, revision))
    resolved = getattr(diagnoser, "resolved", None)
    if resolved is not None:
        hub.warn_if_demo(resolved)
    return diagnoser(src, explain=explain)


# -------------------------------------------------------------------------------------------- helpers
def _explainer(method: str | None) -> Any:
    """The ``as_ai.explain.explain`` function for a valid method, None for no explanation."""
    if method is None:
        return None
    if method not in EXPLAIN_METHODS:
        raise ValueError(f"explain must be None or one of {EXPLAIN_METHODS}, got {method!r}")
    try:
        from .explain import explain as explain_fn
    except ImportError as exc:
        raise NotImplementedError(f"explain={method!r} needs the as_ai.explain module, which is not available "
                                  f"in this installation ({exc}). Call without explain=.") from exc
    return explain_fn


def _image_checks(rg: Radiograph, descriptor: bool, preprocess: Preprocess | None = None
                  ) -> tuple[Any, np.ndarray | None, ExposureCheck]:
    """The photo check, (if asked) the gate's image descriptor and the exposure check, from one shrunk view.

    A photo of a screen gets no mid-tone check: its grey scale is the screen's and the camera's, and the
    photo check names what to fix.
    """
    from ._gate import image_descriptor

    view = rg.work_view
    photo = check_photo(view, meta=rg.meta, original_shape=rg.shape)
    exposure = check_exposure(view, pixels=rg.pixels, preprocess=None if photo.is_photo else preprocess)
    return photo, (image_descriptor(view) if descriptor else None), exposure


def _chunks(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    items = list(items)
    for i in range(0, len(items), n):
        yield items[i:i + n]
