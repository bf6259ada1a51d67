"""Every error and warning as-ai raises, in one place.

Each error is also a built-in exception that callers already catch (``ValueError``, ``OSError``),
carries the offending field or value, and says what to do about it.
"""
from __future__ import annotations

from typing import Mapping


class AsAiError(Exception):
    """Base class of all as-ai errors."""


class InvalidImageError(AsAiError, ValueError):
    """An input image cannot be used as a radiograph.

    ``reason`` is a short machine-readable code (``"empty"``, ``"unsupported_format"``, ``"corrupt"``,
    ``"too_large"``, ``"too_small"``, ``"multi_frame"``, ``"no_pixel_data"``, ``"bad_array"``, ...);
    the message says what was received and what to do.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidPatientError(AsAiError, ValueError):
    """Patient data do not fit the triage model's feature schema.

    ``fields`` maps every offending field name to a sentence describing its problem.
    """

    def __init__(self, message: str, *, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)
        details = "; ".join(f"{k}: {v}" for k, v in self.fields.items())
        super().__init__(f"{message} ({details})" if details else message)


class ModelLoadError(AsAiError, OSError):
    """A model repository cannot be found, fetched, verified or understood.

    ``model_id`` names the repository or folder, ``revision`` the revision asked for (if any).
    """

    def __init__(self, message: str, *, model_id: str | None = None, revision: str | None = None) -> None:
        super().__init__(message)
        self.model_id = model_id
        self.revision = revision


class UntrustedModelError(ModelLoadError):
    """A model file holds something that is not on the allow-list (code, unknown types, pickles).

    ``untrusted`` lists the offending type names or files.
    """

    def __init__(self, message: str, *, untrusted: list[str] | None = None, model_id: str | None = None,
                 revision: str | None = None) -> None:
        super().__init__(message, model_id=model_id, revision=revision)
        self.untrusted = list(untrusted or [])


class AsAiWarning(UserWarning):
    """Base class of all as-ai warnings: filter them by their exact class, not by ``UserWarning``."""


class SyntheticModelWarning(AsAiWarning):
    """The model in use was trained on synthetic (phantom) data and is not for clinical use."""


class NoInputGateWarning(AsAiWarning):
    """The diagnosis model has no input gate, so images unlike its training data are not refused."""


__all__ = [
    "AsAiError",
    "InvalidImageError",
    "InvalidPatientError",
    "ModelLoadError",
    "UntrustedModelError",
    "AsAiWarning",
    "SyntheticModelWarning",
    "NoInputGateWarning",
]
