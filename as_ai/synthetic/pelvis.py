"""Phantom AP pelvic radiographs with known per-side sacroiliitis grades.

A projection-style renderer: bones, soft tissue and bowel gas are turned into line integrals of
attenuation, then exposure, scatter, quantum noise, detector blur and a processing curve make the
stored image (bone bright, 10-12 bit in a uint16 array, like a decoded PXR). Anatomy, acquisition
and each side's lesions come from separate random streams of the seed, so the same seed with other
grades differs only inside the two ``sij_*`` ROIs (the *locality contract*).

Everything here is synthetic: it looks like a schematic but plausible AP pelvis, not a patient.

Example::

    >>> from as_ai.synthetic import pelvis
    >>> ph = pelvis.render(3, grades=(3, 3), size=256)
    >>> ph.image.dtype, ph.meta["label"] in ("AS", "non-AS")
    (dtype('uint16'), True)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _lesions
from ._acquisition import CENTRES, acquire, blur_margin_px
from ._anatomy import MU_SOFT, sample_anatomy, render_attenuation
from ._canvas import Canvas
from .readers import EXPERT1, EXPERT2, REFERENCE, new_york

MIMICS = _lesions.MIMICS
ROI_NAMES = ("sij_left", "sij_right", "hip_left", "hip_right")
_STREAM_ANATOMY, _STREAM_ACQ, _STREAM_LESION, _STREAM_POP = 0, 1, 2, 3


@dataclass(frozen=True)
class Phantom:
    """A rendered phantom radiograph.

    ``image``: uint16 H×W, bone bright, values up to ``2**meta["bits_stored"] - 1``.
    ``meta``: grades (true, (left, right); anatomical left = image right), reader grades, labels,
    centre, mimic, hip involvement, sex, ROIs (pixel boxes ``(x0, y0, x1, y1)``, end-exclusive),
    pixel spacing, seed, and acquisition facts.
    """

    image: np.ndarray = field(repr=False)
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The metadata as JSON-serialisable values."""
        return json.loads(json.dumps(self.meta, default=_jsonable))


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x))


def _check(seed, grades, center, size, mimic):
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
    if center not in CENTRES:
        raise ValueError(f"center must be one of {sorted(CENTRES)}; got {center!r}.")
    if not isinstance(size, (int, np.integer)) or not 128 <= size <= 2048:
        raise ValueError(f"size must be an integer from 128 to 2048 pixels; got {size!r}.")
    if len(grades) != 2 or any(int(g) != g or not 0 <= g <= 4 for g in grades):
        raise ValueError(f"grades must be two integers 0-4 (left, right); got {grades!r}.")
    if mimic not in (None, *MIMICS):
        raise ValueError(f"mimic must be None or one of {list(MIMICS)}; got {mimic!r}.")


def render(seed: int, grades: tuple[int, int] = (0, 0), *, center: str = "A", size: int = 512,
           mimic: str | None = None, hip_involvement: bool = False) -> Phantom:
    """Render the phantom of ``seed`` with the given per-side grades (left, right).

    Anatomy (sex, habitus, pose, bone shapes, bowel gas) depends on ``seed`` only; acquisition on
    ``seed`` and ``center``; grades change only the SI-joint ROIs, a mimic its SI-joint ROIs, hip
    involvement the hip ROIs.

    Raises:
        ValueError: a grade outside 0-4, an unknown centre or mimic, a size outside 128-2048.

    Example::

        >>> ph = render(11, (0, 0), size=256)
        >>> ph.image.shape
        (256, 256)
    """
    _check(seed, grades, center, size, mimic)
    lay = _layout(int(seed), (int(grades[0]), int(grades[1])), center, int(size), mimic, bool(hip_involvement))
    A0 = render_attenuation(lay["canvas"], lay["anatomy"])
    dA = []
    for name in ("left", "right"):
        box = lay["joint_boxes"][name]
        if box is not None:
            dA.append((box, _lesions.render_joint(lay["canvas"], lay["sides"][name], box, lay["grades"][name],
                                                  lay["draws"][name], mimic, lay["mimic_draws"])))
    if hip_involvement:
        for name in ("left", "right"):
            box = lay["hip_boxes"][name]
            if box is not None:
                dA.append((box, _lesions.render_hip_involvement(lay["canvas"], lay["sides"][name], box,
                                                                lay["mimic_draws"])))
    img, _facts = acquire(A0, dA, lay["centre"], lay["canvas"].ps, lay["anat_ref"], lay["acq_rng"])
    return Phantom(image=img, meta=lay["meta"])


def describe(seed: int, grades: tuple[int, int] = (0, 0), *, center: str = "A", size: int = 512,
             mimic: str | None = None, hip_involvement: bool = False) -> dict[str, Any]:
    """The metadata :func:`render` would return, without rendering the image (fast).

    Used to rebuild a dataset's metadata when resuming, and to get ROIs cheaply.
    """
    _check(seed, grades, center, size, mimic)
    lay = _layout(int(seed), (int(grades[0]), int(grades[1])), center, int(size), mimic, bool(hip_involvement))
    return lay["meta"]


def _layout(seed: int, grades: tuple[int, int], center: str, size: int, mimic, hip_involvement: bool) -> dict:
    an = sample_anatomy(np.random.default_rng([seed, _STREAM_ANATOMY]))
    ctr = CENTRES[center]
    acq_rng = np.random.default_rng([seed, _STREAM_ACQ, ord(center)])
    ps = ctr.fov_mm / size
    cv = Canvas(size=size, ps=ps, scale=an.scale * float(acq_rng.uniform(0.98, 1.03)), angle=an.angle,
                tx=an.shift[0], ty=an.shift[1] + 8.0)
    margin = blur_margin_px(ctr, ps)
    # sides: index 0 = sign -1 = image left = patient RIGHT; index 1 = image right = patient LEFT
    sides = {"right": an.sides[0], "left": an.sides[1]}
    grade_of = {"left": grades[0], "right": grades[1]}
    mimic_rng = np.random.default_rng([seed, _STREAM_LESION, 9])
    mimic_draws = dict(size=float(mimic_rng.uniform(0.8, 1.2)), density=float(mimic_rng.uniform(0.8, 1.2)),
                       narrow=float(mimic_rng.uniform(0.25, 0.45)))
    draws = {name: _lesions.joint_lesion_draws(np.random.default_rng([seed, _STREAM_LESION, k]))
             for k, name in enumerate(("left", "right"))}
    joint_boxes = {name: cv.box_for(_lesions.joint_support_uv(sides[name])) for name in ("left", "right")}
    hip_boxes = {name: cv.box_for(_lesions.hip_support_uv(sides[name])) for name in ("left", "right")}
    rois = {}
    for name in ("left", "right"):
        rois[f"sij_{name}"] = _roi(joint_boxes[name], margin, size)
    for name in ("left", "right"):
        rois[f"hip_{name}"] = _roi(hip_boxes[name], margin, size)
    rg = REFERENCE.read(grades, seed=seed)
    meta = dict(
        seed=seed, grades=list(grades), reader_grades=list(rg), label=new_york(*rg),
        true_label=new_york(*grades), expert1_label=EXPERT1.label(grades, seed=seed),
        expert2_label=EXPERT2.label(grades, seed=seed), center=center, mimic=mimic,
        hip_involvement=bool(hip_involvement), sex=an.sex, habitus=round(an.habitus, 3),
        rois={k: rois[k] for k in ROI_NAMES}, pixel_spacing_mm=round(ps, 5), size=size,
        bits_stored=ctr.bits, photometric=ctr.photometric, modality=ctr.modality,
        synthetic=True, generator="as_ai.synthetic.pelvis", generator_version=1,
    )
    return dict(canvas=cv, anatomy=an, centre=ctr, acq_rng=acq_rng, sides=sides, grades=grade_of,
                draws=draws, mimic_draws=mimic_draws, joint_boxes=joint_boxes, hip_boxes=hip_boxes,
                anat_ref=MU_SOFT * an.trunk_depth * 0.9, meta=meta)


def _roi(box, margin: int, size: int) -> list[int]:
    """Pixel box (x0, y0, x1, y1) covering a support box plus the blur margin."""
    if box is None:
        return [0, 0, 0, 0]
    r0, r1, c0, c1 = box
    return [max(c0 - margin, 0), max(r0 - margin, 0), min(c1 + margin, size), min(r1 + margin, size)]


# --- population model ---------------------------------------------------------------------------

def draw_case(seed: int) -> dict[str, Any]:
    """Draw grades, mimic and hip involvement of the patient with ``seed`` (population model).

    About 40 % of patients have AS by their true grades (AS is commoner in men); AS is usually
    bilateral and roughly symmetric; non-AS patients have grades 0-1, sometimes a unilateral 2, and
    sometimes a mimic (osteitis condensans ilii in women, DISH and degenerative change). Hip
    involvement occurs in about 30 % of AS and 4 % of non-AS patients.
    """
    an = sample_anatomy(np.random.default_rng([int(seed), _STREAM_ANATOMY]))
    rng = np.random.default_rng([int(seed), _STREAM_POP])
    p_as = 0.47 if an.sex == "M" else 0.31
    is_as = rng.random() < p_as
    mimic = None
    if is_as:
        sev = int(rng.choice([2, 3, 4], p=[0.32, 0.46, 0.22]))
        while True:
            d = rng.choice([-1, 0, 1], size=2, p=[0.22, 0.62, 0.16])
            g = np.clip(sev + d, 0, 4)
            if new_york(*g) == "AS":
                break
        hip = rng.random() < 0.30
    else:
        while True:
            base = int(rng.choice([0, 1], p=[0.6, 0.4]))
            d = rng.choice([-1, 0, 1], size=2, p=[0.15, 0.65, 0.2])
            g = np.clip(base + d, 0, 2)
            if new_york(*g) == "non-AS":
                break
        u = rng.random()
        if an.sex == "F" and u < 0.10:
            mimic = "osteitis_condensans_ilii"
        elif an.sex == "M" and u < 0.06:
            mimic = "dish"
        elif 0.85 < u < 0.95:
            mimic = "degenerative"
        hip = rng.random() < 0.04
    return dict(grades=(int(g[0]), int(g[1])), mimic=mimic, hip_involvement=bool(hip), sex=an.sex)


def sample(seed: int, *, center: str = "A", size: int = 512) -> Phantom:
    """Render the patient of ``seed`` drawn from the population model (see :func:`draw_case`).

    Example::

        >>> ph = sample(5, size=256)
        >>> sorted(ph.meta["rois"])
        ['hip_left', 'hip_right', 'sij_left', 'sij_right']
    """
    case = draw_case(seed)
    return render(seed, case["grades"], center=center, size=size, mimic=case["mimic"],
                  hip_involvement=case["hip_involvement"])
