"""What the Space's environment sets, and the fixed limits of its server."""
from __future__ import annotations

import os


def int_setting(name: str, default: int, low: int) -> int:
    """A positive whole-number setting from the environment, with an error that names it when it is not."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if value < low:
        raise SystemExit(f"{name} must be at least {low}, got {value}")
    return value


# Requests run CONCURRENCY_LIMIT at a time; QUEUE_MAX_SIZE more may wait; beyond that Gradio answers "busy".
QUEUE_MAX_SIZE = int_setting("AS_AI_SPACE_QUEUE_SIZE", 24, 1)
CONCURRENCY_LIMIT = int_setting("AS_AI_SPACE_CONCURRENCY", 2, 1)
MAX_FILE_SIZE = "64mb"
# Gradio's own cache of uploads and outputs: every 5 minutes delete files older than 10 minutes.
DELETE_CACHE = (300, 600)
EXPLAIN_CHOICES = {"Grad-CAM (fast)": "gradcam", "LIME (slower)": "lime", "None": None}
# Heatmap overlays are sent as JPEG: ~1 ms to encode and ~40 KB, where PNG took ~90 ms and ~180 KB.
HEATMAP_FORMAT = "jpeg"
RADIOGRAPH_TYPES = [".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff"]


def server_address() -> tuple[str, int]:
    """Host and port to listen on (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT; default 127.0.0.1:7860)."""
    return (os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1", int(os.environ.get("GRADIO_SERVER_PORT") or 7860))
