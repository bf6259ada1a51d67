"""The benchmark recorder: every figure a benchmark measures goes to ``runs/bench.json`` and a table.

A benchmark asks for the ``record`` fixture and calls it once per figure, after its checks::

    def test_latency(record):
        ...
        record("diagnose_latency_ms", ours_ms, "ms", baseline=naive_ms, ratio=naive_ms / ours_ms,
               ratio_is="speed-up (baseline/value)", baseline_is="naive per-member PIL script")

Files (written when the session ends, only if something was recorded; each atomically: a temporary file
in the same folder, then ``os.replace``):

``runs/bench.json``
    A JSON list of metric objects, sorted by name: ``name``, ``value``, ``unit``, ``baseline`` (the
    baseline's value in the same unit, or null), ``ratio`` (null without a baseline), ``ratio_is`` (how
    the ratio reads: ``"speed-up (baseline/value)"`` for times, ``"speed-up (value/baseline)"`` for rates,
    ``"value/baseline"`` for costs), ``baseline_is`` (what the baseline is), ``command`` (reproduces this
    figure alone), ``measured_at`` (UTC, ISO 8601), ``run`` (the key of the machine facts below),
    ``torch_threads`` (at the time of recording; null if torch was not imported). A run merges into the
    existing file by name: figures not measured again are kept, with their own ``measured_at`` and ``run``.
``runs/bench_machine.json``
    An object ``{run: facts}`` for every run still referenced from ``bench.json``: CPU model, cores,
    torch threads, Python / torch / gradio versions, platform, date, load average at the start and at the
    end, and the pytest arguments.

``AS_AI_BENCH_DIR`` puts both files in another folder. Benchmarks are run by ``make bench``; the table
of the whole file (figures of this run marked ``*``) is printed at the end of the run.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(os.environ.get("AS_AI_BENCH_DIR") or ROOT / "runs")
BENCH_JSON = "bench.json"
MACHINE_JSON = "bench_machine.json"
# What reproduces one figure: the ``make bench`` command narrowed to the benchmark's node id.
BASE_COMMAND = (".venv/bin/python -m pytest -q -s -p no:cacheprovider -m benchmark "
                "-o python_files='bench_*.py'")
RATIO_KINDS = ("speed-up (baseline/value)", "speed-up (value/baseline)", "value/baseline")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed
        return None


def _number(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary file in the same folder, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path, default: Any) -> Any:
    """``path``'s JSON, or ``default`` when it does not exist or cannot be read (reported on stderr)."""
    if not path.is_file():
        return default
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"[bench] {path} could not be read ({exc}); starting it afresh", file=sys.stderr)
        return default
    return data if isinstance(data, type(default)) else default


def merge(existing: list[dict], new: list[dict]) -> list[dict]:
    """Entries of ``existing`` and ``new`` by name (``new`` wins), sorted by name."""
    by_name = {e["name"]: e for e in existing if isinstance(e, dict) and "name" in e}
    by_name.update({e["name"]: e for e in new})
    return [by_name[k] for k in sorted(by_name)]


class Recorder:
    """Collects the figures of one pytest session and writes / prints them at its end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.run = _now()
        self.entries: list[dict] = []
        self.machine: dict[str, Any] = {"date": self.run, "loadavg_start": _loadavg()}
        self.merged: list[dict] | None = None
        self.written: Path | None = None

    def machine_facts(self) -> None:
        """What the machine is (called once benchmarks were collected: imports torch)."""
        import torch

        self.machine.update(
            cpu_model=_cpu_model(), cores=os.cpu_count(),
            cores_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            torch_threads=torch.get_num_threads(), python=platform.python_version(), torch=torch.__version__,
            gradio=_version("gradio"), platform=platform.platform(),
            pytest_args=" ".join(shlex.quote(a) for a in self.config.invocation_params.args))

    def record(self, name: str, value: float, unit: str, *, baseline: float | None = None,
               ratio: float | None = None, ratio_is: str | None = None, baseline_is: str | None = None,
               command: str) -> dict:
        if any(e["name"] == name for e in self.entries):
            raise ValueError(f"benchmark figure {name!r} recorded twice in one run; give each figure its own name")
        if ratio is None and baseline is not None and _number(baseline):
            ratio = float(value) / float(baseline)
            ratio_is = ratio_is or "value/baseline"
        if ratio is not None and ratio_is not in RATIO_KINDS:
            raise ValueError(f"ratio_is must be one of {RATIO_KINDS}, got {ratio_is!r}")
        torch = sys.modules.get("torch")
        entry = {"name": name, "value": _number(value), "unit": unit, "baseline": _number(baseline),
                 "ratio": _number(ratio), "ratio_is": ratio_is if ratio is not None else None,
                 "baseline_is": baseline_is, "command": command, "measured_at": _now(), "run": self.run,
                 "torch_threads": torch.get_num_threads() if torch is not None else None}
        self.entries.append(entry)
        return entry

    def write(self) -> None:
        if not self.entries:
            return
        self.machine["loadavg_end"] = _loadavg()
        self.merged = merge(_read_json(BENCH_DIR / BENCH_JSON, []), self.entries)
        runs = _read_json(BENCH_DIR / MACHINE_JSON, {})
        runs[self.run] = self.machine
        used = {e.get("run") for e in self.merged}
        _write_json(BENCH_DIR / MACHINE_JSON, {k: v for k, v in sorted(runs.items()) if k in used})
        _write_json(BENCH_DIR / BENCH_JSON, self.merged)
        self.written = BENCH_DIR / BENCH_JSON

    def table(self) -> list[str]:
        rows = self.merged if self.merged is not None else self.entries

        def fmt(x: float | None) -> str:
            if x is None:
                return "—"
            return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"

        header = ("", "name", "value", "unit", "baseline", "ratio", "ratio is", "measured (UTC)")
        body = [("*" if e.get("run") == self.run else "", e["name"], fmt(e.get("value")), e.get("unit") or "",
                 fmt(e.get("baseline")), fmt(e.get("ratio")), e.get("ratio_is") or "",
                 (e.get("measured_at") or "")[:16].replace("T", " ")) for e in rows]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        line = lambda r: "  ".join(c.rjust(w) if i in (2, 4, 5) else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        return [line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in body)]


_KEY = pytest.StashKey[Recorder]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEY] = Recorder(config)
    if "bench_*.py" in config.getini("python_files"):  # a benchmark session (make bench, or one of its commands)
        # lime's data_labels draws a progress bar per explanation; tqdm reads TQDM_DISABLE when it is first
        # imported, which can be before bench_explain.py sets it (bench_diagnose.py imports as_ai first).
        os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.get_closest_marker("benchmark") for item in session.items):
        session.config.stash[_KEY].machine_facts()


def _command(item: pytest.Item) -> str:
    """The command that runs just this benchmark, from the repository root."""
    rel = Path(str(item.path)).resolve().relative_to(ROOT).as_posix()
    return f"{BASE_COMMAND} {shlex.quote(rel + '::' + item.name)}"


@pytest.fixture
def record(request: pytest.FixtureRequest):
    """``record(name, value, unit, *, baseline=None, ratio=None, ratio_is=None, baseline_is=None, command=None)``.

    Adds one figure to ``runs/bench.json``. Without ``ratio`` but with a baseline, ratio = value / baseline.
    ``command`` defaults to the command that runs this benchmark alone.
    """
    recorder = request.config.stash[_KEY]
    default_command = _command(request.node)

    def _record(name: str, value: float, unit: str, *, command: str | None = None, **kw: Any) -> dict:
        return recorder.record(name, value, unit, command=command or default_command, **kw)

    return _record


@pytest.fixture(scope="session")
def write_pngs():
    """``write_pngs(folder, n, size)``: n 16-bit PNGs, a bright blob on noise that moves a little per image."""
    import numpy as np
    from PIL import Image

    def write(folder: Path, n: int, size: int) -> list[Path]:
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:size, 0:size] / float(size)
        paths = []
        for i in range(n):
            img = 0.3 + 0.4 * np.exp(-((x - 0.5) ** 2 + (y - 0.4 - 0.16 * i / n) ** 2) / 0.05) \
                + 0.05 * rng.random((size, size))
            paths.append(folder / f"pxr{i}.png")
            Image.fromarray((np.clip(img, 0, 1) * 65535).astype(np.uint16)).save(paths[-1])
        return paths

    return write


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads():
    """Give torch's thread count back after each benchmark file (some pin it to 1), so order does not matter."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    if before is not None:
        torch.set_num_threads(before)


def pytest_sessionfinish(session: pytest.Session) -> None:
    session.config.stash[_KEY].write()


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    recorder = config.stash.get(_KEY, None)
    if recorder is None or not recorder.entries:
        return
    tr = terminalreporter
    m = recorder.machine
    tr.write_sep("=", f"benchmarks: {len(recorder.entries)} figures measured in this run (*)")
    tr.write_line(f"machine: {m.get('cpu_model')}, {m.get('cores')} cores, torch {m.get('torch')} "
                  f"({m.get('torch_threads')} threads), Python {m.get('python')}; load average at start "
                  f"{m.get('loadavg_start')}, at end {m.get('loadavg_end')}")
    for line in recorder.table():
        tr.write_line(line)
    if recorder.written is not None:
        tr.write_line(f"written: {recorder.written} (and {MACHINE_JSON} beside it)")
