"""Explanations of a diagnosis: Grad-CAM, LIME and NormLIME heatmaps on the input radiograph's pixel grid.

* **Grad-CAM** (:func:`gradcam`, module :mod:`~as_ai.explain.grad_cam`) for every ensemble member and for
  the ensemble (member maps weighted as the ensemble weights their probabilities). One forward pass per
  member plus a backward pass through the classifier head only -- fast enough to be the Space's default.
* **LIME** (:func:`lime`, :mod:`~as_ai.explain.lime_map`) with the ``lime`` package's ``LimeImageExplainer``
  on SLIC superpixels of the grey image, the neighbourhood scored in large batches (see
  :mod:`as_ai.explain._lime_core`).
* **NormLIME** (:class:`NormLime`, :func:`normlime`, :mod:`~as_ai.explain.norm_lime`): global importance of
  superpixel *kinds* learned over a dataset (``python -m train.explain``), used to re-weight an image's LIME
  map, as in PaddleX.
* How faithful each method is (deletion curves, whether the strongest region lies on a sacroiliac joint) is
  measured in training, by ``train/faithfulness.py`` (``python -m train.explain --faithfulness K``).

Every method returns an :class:`Explanation` (:mod:`~as_ai.explain.result`) given on the pixel grid of the
image passed in (the resize and centre crop of the model's preprocessing are undone); pixels the model
never sees (cut off by the centre crop) are 0. The methods take any diagnoser with the public members of
:class:`~as_ai.explain.protocol.Explainable`; this package never imports :mod:`as_ai.diagnoser`.

Example:
    >>> from as_ai.diagnosis import Diagnoser                                   # doctest: +SKIP
    >>> d = Diagnoser.from_pretrained("as_ai/demo_models/diagnosis")            # doctest: +SKIP
    >>> e = explain(d, "pelvis.png", method="gradcam")                          # doctest: +SKIP
    >>> e.heatmap.shape == load_radiograph("pelvis.png").shape                  # doctest: +SKIP
    True
"""
from __future__ import annotations

from typing import Any

from .grad_cam import gradcam
from .lime_map import lime, lime_setup, model_view, superpixel_explanation
from .norm_lime import NormLime, early_layer, lime_with_features, normlime, superpixel_features
from .protocol import Explainable, ensemble_view, read_view
from .result import Explanation

# Found here before the package was split (tests, benchmarks, ``train/explain.py``): the image and geometry
# helpers, the constants and LIME's setup type.
from ..decoding import load_radiograph  # noqa: F401
from ..preprocess import Preprocess  # noqa: F401
from ..radiograph import Radiograph  # noqa: F401
from ..transforms import crop_box, model_grey, normalise, resized_size, to_input_grid  # noqa: F401
from .lime_map import AUTO_MAX_SAMPLES, LimeSetup  # noqa: F401
from .norm_lime import NORMLIME_CONFIG, NORMLIME_FILE  # noqa: F401

METHODS = ("gradcam", "lime", "normlime")

__all__ = ["Explanation", "explain", "gradcam", "lime", "normlime", "NormLime", "METHODS", "lime_with_features",
           "superpixel_features", "Explainable", "ensemble_view", "read_view", "lime_setup", "model_view",
           "superpixel_explanation", "early_layer"]

def explain(diagnoser: Explainable, image: Any, *, method: str = "gradcam", **options: Any) -> Explanation:
    """Explain the diagnosis of ``image`` with ``method`` ("gradcam", "lime" or "normlime").

    ``options`` go to :func:`gradcam`, :func:`lime` or :func:`normlime` (which needs ``stats=``).

    Raises:
        ValueError: unknown method.
        InvalidImageError: ``image`` cannot be read as a radiograph.
    """
    if method == "gradcam":
        return gradcam(diagnoser, image, **options)
    if method == "lime":
        return lime(diagnoser, image, **options)
    if method == "normlime":
        stats = options.pop("stats", None)
        if stats is None:
            raise ValueError("method='normlime' needs stats= (a NormLime or the folder train.explain wrote)")
        return normlime(diagnoser, image, stats, **options)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
