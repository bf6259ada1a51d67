"""Radiograph -> P(ankylosing spondylitis): the :class:`Diagnoser`, a loaded diagnosis ensemble that runs.

A :class:`Diagnoser` holds an :class:`~as_ai.ensemble.Ensemble` of timm CNNs plus everything the model
repository says about using them (read and written as a :class:`~as_ai.repo_config.DiagnosisRepoConfig`:
preprocessing, combine rule, calibration, decision threshold), the input gate and the model's provenance;
it turns images into :class:`~as_ai.result.Diagnosis` results. The functions most callers use,
:func:`as_ai.diagnose` and :func:`as_ai.load_diagnoser` (one Diagnoser per model kept for the process),
are :mod:`as_ai.diagnosis`'s.

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
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from . import hub, model_notes
from ._repo_io import default_card, load_members, save_members, write_config
from .decoding import load_radiograph
from .cross_view import CrossViewRule
from .ensemble import Calibration, Ensemble, combine_weights
from .prefetch import loaded_chunks, worker_pool
from .preprocess import Preprocess, scaled_for_size
from .quality import InputGate, build_check, image_checks, may_be_camera_picture, no_gate_warning
from .radiograph import Radiograph
from .repo_config import LABELS, DiagnosisRepoConfig, check_member_name, extra_entries, repo_error
from .joints._attach import READER_FOLDER, JointReaderMixin
from .model_notes import SOFTNESS_CAUTION_RISE
from .result import INDETERMINATE, Diagnosis
from .transforms import photo_rectify_from_config, photo_stretch_from_config, photo_view, to_model_input

EXPLAIN_METHODS = ("gradcam", "lime")

__all__ = ["Diagnoser", "LABELS", "EXPLAIN_METHODS", "SOFTNESS_CAUTION_RISE", "explain_function"]


class Diagnoser(JointReaderMixin):
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
        self.cross_view = CrossViewRule.from_json(self.config.get("cross_view"), image_members=names)

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
        mid = resolved.model_id
        repo = DiagnosisRepoConfig.from_json(resolved.config, model_id=mid, revision=revision)
        members, archs, sizes = load_members(repo, resolved.path, model_id=mid, revision=revision)
        try:
            gate = InputGate.from_config(resolved.path, repo.input_gate)
            self = cls(members, archs=archs, preprocess=repo.preprocess, input_sizes=sizes, weights=repo.weights,
                       cv_aucs=repo.cv_aucs, combine=repo.combine, calibration=repo.calibration,
                       threshold=repo.threshold, config=resolved.config, gate=gate, provenance=resolved.provenance)
        except (TypeError, ValueError, KeyError, OSError) as exc:
            raise repo_error(mid, revision, f"{type(exc).__name__}: {exc}") from exc
        if self.cross_view is not None and not resolved.config.get("joint_reader"):
            raise repo_error(mid, revision, "'cross_view' combines the joint reader, but no 'joint_reader' is named")
        if gate is None:
            no_gate_warning(resolved.provenance)
        self.resolved = resolved
        return self.attach_joint_reader(resolved.config.get("joint_reader"), base=resolved.path)  # None: no reader

    def save_pretrained(self, folder: str | os.PathLike, *, card: str | None = None,
                        dtype: torch.dtype = torch.float16) -> Path:
        """Write the repository layout of DESIGN.md to ``folder`` and return its path.

        Members go to ``members/<name>/`` in timm format (``config.json`` + ``model.safetensors``, float16
        by default: half the size, probabilities change by ~1e-3 at most), then ``as_ai.json`` with the
        sha256 of every file, then ``README.md`` (``card``, or a short generated card).
        The input gate, when there is one, is written as ``input_gate.safetensors``; an attached joint reader
        to ``joints/`` (with the cross-view rule, when the model has one).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        entries = save_members(folder, self.ensemble, archs=self.archs, cv_aucs=self.cv_aucs,
                               preprocess=self.preprocess, dtype=dtype)
        hashed = [f for entry in entries for f in entry.files]
        gate_entry = self.gate.save(folder) if self.gate is not None else None
        if gate_entry is not None:
            hashed.append(str(gate_entry["file"]))
        reader_files = self._save_joint_reader(folder)  # the reader travels with the repository
        extra = {k: v for k, v in extra_entries(self.config).items() if k not in ("joint_reader", "cross_view")}
        if reader_files:  # without a reader, the cross-view rule has nothing to combine and is not written
            extra["joint_reader"] = {"path": READER_FOLDER}
            if self.cross_view is not None:
                extra["cross_view"] = self.cross_view.to_json()
        repo = DiagnosisRepoConfig(members=tuple(entries), preprocess=self.preprocess, combine=self.combine,
                                   calibration=self.calibration, threshold=self.threshold, input_gate=gate_entry,
                                   metrics=self.config.get("metrics", {}), training=self.config.get("training", {}),
                                   extra=extra)
        self.config = write_config(folder, repo.to_json(), hashed=hashed + reader_files)
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
        """What a result on a photo of a screen carries (:func:`as_ai.model_notes.photo_caution`)."""
        return model_notes.photo_caution(self.config, stretched=bool(self.photo_stretch),
                                         cross_view=self.cross_view if self.joint_reader is not None else None)

    @property
    def softness_caution(self) -> str | None:
        """What a result on a blurred image carries, when this model's softness test earns one
        (:func:`as_ai.model_notes.softness_caution`), else None."""
        return model_notes.softness_caution(self.config)

    def model_views(self, images: Sequence[Radiograph | np.ndarray], photos: Sequence[Any] | None = None
                    ) -> list[Radiograph]:
        """The radiographs as the members read them: a photo of a screen rectified and contrast-stretched when
        the model says so (``as_ai.json["photo_input"]``: ``rectify``, ``contrast_stretch``).

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
                image_checks(rg, False)[0] if may_be_camera_picture(rg.meta) else None)
            out.append(photo_view(rg, self.photo_stretch, photo is not None and photo.is_photo,
                                  rectify=photo_rectify_from_config(self.config.get("photo_input"))))
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
        self.ensemble.move_to(device)
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
        out = [self._forward(self.model_views(rgs))[0] for rgs in loaded_chunks(self._executor(), images, batch_size)]
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
        explainer = explain_function(explain)
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
            for rgs in loaded_chunks(self._executor(), srcs, batch_size):
                results += self._diagnose_loaded(rgs)
                if bar is not None:
                    bar.update(len(rgs))
        finally:
            if bar is not None:
                bar.close()
        return results

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = worker_pool("as-ai-diagnose")
        return self._pool

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
        jobs = [self._executor().submit(image_checks, rg, image_part, self.preprocess)  # during the forward pass
                for rg in rgs]
        joints = self._read_joints(rgs)  # the SI joints' reader (when attached) runs on the worker threads too
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
            d = Diagnosis(probability=float(p), label=label, threshold=self.threshold, members=named,
                          spread=float(np.std(mp)) if len(mp) > 1 else 0.0, check=check, explanation=None,
                          model=self.provenance, image=rg.to_dict())
            out.append(self._with_sides(d, joints[i]))
        return out

    def __repr__(self) -> str:
        members = ", ".join(f"{n}={self.archs[n]}" for n in self.ensemble.names)
        return f"Diagnoser({members}; combine={self.combine!r}, threshold={self.threshold:.3f}, {self.provenance})"


# -------------------------------------------------------------------------------------------- helpers
def explain_function(method: str | None) -> Any:
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
