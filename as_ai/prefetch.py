"""Decoding ahead of the model: images read on worker threads one batch before the forward pass needs them.

:func:`loaded_chunks` turns any sequence of image sources into lists of :class:`~as_ai.radiograph.Radiograph`,
``n`` at a time, in input order; while the caller runs the model on one list, the pool already decodes the
next (PIL and NumPy release the GIL, so this overlaps on a CPU). A source that cannot be read raises its
:class:`~as_ai.errors.InvalidImageError` when its list is reached, in input order.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

from .decoding import load_radiograph
from .radiograph import Radiograph

__all__ = ["worker_pool", "chunks", "loaded_chunks"]


def worker_pool(name: str) -> ThreadPoolExecutor:
    """A pool of 2-4 threads (by the CPU count) for decoding and image checks, its threads named ``name``."""
    return ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1)), thread_name_prefix=name)


def chunks(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive slices of ``n`` (the last may be shorter)."""
    items = list(items)
    for i in range(0, len(items), n):
        yield items[i:i + n]


def loaded_chunks(pool: ThreadPoolExecutor, srcs: Iterable[Any], n: int,
                  load: Callable[[Any], Radiograph] = load_radiograph) -> Iterator[list[Radiograph]]:
    """Radiographs in chunks of ``n``, decoded on ``pool``'s threads one chunk ahead."""
    parts = list(chunks(list(srcs), n))
    if not parts:
        return
    pending = [pool.submit(load, s) for s in parts[0]]
    for k in range(len(parts)):
        current = pending
        pending = [pool.submit(load, s) for s in parts[k + 1]] if k + 1 < len(parts) else []
        yield [f.result() for f in current]  # re-raises InvalidImageError in input order
