"""Size limits checked before an image is decoded (private to ``as_ai.decoding``).

A hostile or broken file can claim any size in its header; decoding it first and checking after
would allocate what the header claims. Every reader in ``as_ai`` asks a :class:`Limits` first.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidImageError


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """The limits ``load_radiograph`` enforces: bytes read, pixels decoded, shortest edge."""

    max_bytes: int = 200_000_000
    max_pixels: int = 100_000_000
    min_size: int = 64

    def __post_init__(self) -> None:
        _positive_int("max_bytes", self.max_bytes)
        _positive_int("max_pixels", self.max_pixels)
        _positive_int("min_size", self.min_size)

    def check_bytes(self, nbytes: int, *, what: str = "input") -> None:
        """Refuse an input larger than ``max_bytes`` (reason ``too_large``) or empty (reason ``empty``)."""
        if nbytes == 0:
            raise InvalidImageError(f"The {what} is empty (0 bytes); pass an image file with content.",
                                    reason="empty")
        if nbytes > self.max_bytes:
            raise InvalidImageError(
                f"The {what} is {nbytes:,} bytes, over the limit of {self.max_bytes:,} bytes (max_bytes). "
                "Pass a smaller file (e.g. a PNG export of the radiograph) or raise max_bytes if you trust it.",
                reason="too_large")

    def check_dims(self, height: int, width: int, *, frames: int = 1, what: str = "image") -> None:
        """Refuse dimensions over ``max_pixels`` (``too_large``) or under ``min_size`` (``too_small``).

        Called with the dimensions a header claims, before any pixel is decoded.
        """
        height, width, frames = int(height), int(width), max(int(frames), 1)
        total = height * width * frames
        if total > self.max_pixels:
            frames_txt = f" × {frames} frames" if frames > 1 else ""
            raise InvalidImageError(
                f"The {what} claims {height}×{width}{frames_txt} = {total:,} pixels, over the limit of "
                f"{self.max_pixels:,} (max_pixels). Downscale it before loading, or raise max_pixels "
                "if you trust the file.", reason="too_large")
        if min(height, width) < self.min_size:
            raise InvalidImageError(
                f"The {what} is {height}×{width} pixels; a radiograph needs at least {self.min_size} pixels "
                f"on its shortest edge (min_size). Pass the full-resolution image, not a thumbnail.",
                reason="too_small")
