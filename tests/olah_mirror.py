"""A local Hugging Face Hub for tests: ``olah`` serving plain git repos over HTTP on 127.0.0.1.

Register it with ``pytest_plugins = ["olah_mirror"]`` in a test module. It provides:

* ``olah_mirror`` (session fixture): an :class:`OlahMirror` - olah (PyPI) started in offline mode with
  ``mirrors-path`` pointing at git repos in a temp folder, on a free loopback port. It answers the Hub's
  HTTP API (``/api/models/{repo}/revision/{rev}``, ``/{repo}/resolve/{rev}/{file}``, refs) from those repos.
* :class:`MirrorHfApi`: a stand-in for ``huggingface_hub.HfApi`` whose ``create_repo``, ``upload_folder``
  and ``create_tag`` first bind their arguments to the real ``HfApi`` signatures, then commit and tag
  in the mirror's git repos (olah has no upload API).
* :meth:`OlahMirror.python`: run a snippet in a fresh interpreter with ``HF_ENDPOINT`` / ``HF_HUB_CACHE`` /
  ``HF_HUB_OFFLINE`` set before huggingface_hub is imported (it reads them at import time).
* ``write_diagnosis_repo`` / ``write_triage_repo``: small hand-made model repos of both kinds.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
GIT_ID = ["-c", "user.name=as-ai tests", "-c", "user.email=tests@as-ai.invalid", "-c", "commit.gpgsign=false",
          "-c", "tag.gpgsign=false", "-c", "init.defaultBranch=main"]
_RESULT = "@@AS_AI_RESULT@@"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stdout (stripped); raise with stderr on failure."""
    proc = subprocess.run(["git", *GIT_ID, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


class OlahMirror:
    """An olah server over local git repos (``<root>/mirrors/models/<org>/<name>``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mirrors = root / "mirrors"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = root / "olah.out"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo_dir(self, repo_id: str) -> Path:
        return self.mirrors / "models" / repo_id

    # --- server lifecycle ---------------------------------------------------------------------------
    def start(self, *, attempts: int = 3, timeout: float = 60.0) -> "OlahMirror":
        (self.mirrors / "models").mkdir(parents=True, exist_ok=True)
        # a sentinel repo with a unique commit: "ready" means *our* server answers with it
        probe = self.repo_dir(f"as-ai-probe/{os.getpid()}-{time.time_ns()}")
        probe.mkdir(parents=True)
        git(probe, "init", "-q", "-b", "main")
        (probe / "probe.txt").write_text(str(probe))
        git(probe, "add", "probe.txt")
        git(probe, "commit", "-q", "-m", "probe")
        self._probe = (probe.relative_to(self.mirrors / "models").as_posix(), git(probe, "rev-parse", "HEAD"))
        last = ""
        for _ in range(attempts):
            self.port = _free_port()
            config = self.root / "olah.toml"
            config.write_text(textwrap.dedent(f"""\
                [basic]
                host = "127.0.0.1"
                port = {self.port}
                repos-path = {json.dumps(str(self.root / "olah-cache"))}
                mirrors-path = [{json.dumps(str(self.mirrors))}]
                mirror-scheme = "http"
                mirror-netloc = "127.0.0.1:{self.port}"
                mirror-lfs-netloc = "127.0.0.1:{self.port}"

                [accessibility]
                offline = true
                """))
            out = open(self.log, "wb")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "olah.server", "--config", str(config), "--log-path",
                 str(self.root / "logs")], cwd=self.root, stdout=out, stderr=subprocess.STDOUT)
            out.close()
            if self._wait_ready(timeout):
                return self
            last = self.log.read_text(errors="replace")[-2000:]
            self.stop()
        raise RuntimeError(f"olah did not start on 127.0.0.1 after {attempts} attempts:\n{last}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            repo, sha = self._probe
            try:
                with urllib.request.urlopen(f"{self.url}/api/models/{repo}/revision/main", timeout=2) as r:
                    if json.loads(r.read()).get("sha") == sha:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    # --- direct git access (what a maintainer pushing to the repo would do) ---------------------------
    def commit_files(self, repo_id: str, files: dict[str, bytes], message: str, *, branch: str = "main") -> str:
        """Commit ``files`` (relative path -> content) on ``branch`` of ``repo_id``; return the commit sha."""
        repo = self.repo_dir(repo_id)
        git(repo, "checkout", "-q", branch)
        for rel, data in files.items():
            target = repo / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            git(repo, "add", "--", rel)
        git(repo, "commit", "-q", "-m", message)
        return git(repo, "rev-parse", "HEAD")

    def rev_parse(self, repo_id: str, rev: str) -> str:
        return git(self.repo_dir(repo_id), "rev-parse", f"{rev}^{{commit}}")

    # --- a client in a fresh interpreter ------------------------------------------------------------
    def env(self, cache: Path, *, offline: bool = False, **extra: str) -> dict[str, str]:
        """Environment for a Hub client that talks to this mirror and caches in ``cache``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "AS_AI_"))}
        env.update(HF_ENDPOINT=self.url, HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home"),
                   HF_HUB_OFFLINE="1" if offline else "0", HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_IMPLICIT_TOKEN="1",
                   GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(REPO_ROOT), PYTHONWARNINGS="ignore")
        env.update(extra)
        return env

    def python(self, code: str, *, cache: Path, offline: bool = False, timeout: float = 180,
               **extra_env: str) -> Any:
        """Run ``code`` in a new interpreter against this mirror; return what it passed to ``emit()``.

        The snippet gets ``emit(obj)`` (send a JSON result back) and ``error_of(fn, *a, **kw)`` (call
        ``fn`` and describe the exception it raised, or None).
        """
        prelude = textwrap.dedent(f"""\
            import json as _json
            def emit(obj):
                print({_RESULT!r} + _json.dumps(obj), flush=True)
            def error_of(fn, *args, **kwargs):
                try:
                    fn(*args, **kwargs)
                except Exception as exc:
                    return {{"type": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
                            "message": str(exc), "model_id": getattr(exc, "model_id", None),
                            "revision": getattr(exc, "revision", None),
                            "untrusted": getattr(exc, "untrusted", None)}}
                return None
            """)
        proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=REPO_ROOT,
                              env=self.env(cache, offline=offline, **extra_env), capture_output=True, text=True,
                              timeout=timeout)
        results = [line[len(_RESULT):] for line in proc.stdout.splitlines() if line.startswith(_RESULT)]
        if proc.returncode != 0 or not results:
            raise AssertionError(f"client snippet failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-5000:]}")
        return json.loads(results[-1])


@pytest.fixture(scope="session")
def olah_mirror(tmp_path_factory: pytest.TempPathFactory):
    """A running olah mirror shared by the session; tests use their own repo ids and HF caches."""
    if shutil.which("git") is None:
        pytest.skip("git is needed for the olah mirror's repositories")
    mirror = OlahMirror(tmp_path_factory.mktemp("olah")).start()
    yield mirror
    mirror.stop()


# --- the publishing stand-in ---------------------------------------------------------------------------
class MirrorHfApi:
    """Stand-in for ``huggingface_hub.HfApi`` that publishes into an :class:`OlahMirror`.

    Each call is bound to the real ``HfApi`` method's signature (so a wrong or missing argument fails
    here as it would against huggingface.co), recorded in ``calls``, and carried out with git.
    """

    def __init__(self, mirror: OlahMirror) -> None:
        self.mirror = mirror
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _bind(self, name: str, args: tuple, kwargs: dict) -> dict[str, Any]:
        from huggingface_hub import HfApi

        bound = inspect.signature(getattr(HfApi, name)).bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
        self.calls.append((name, arguments))
        if arguments.get("repo_type") not in (None, "model"):
            raise NotImplementedError(f"the mirror stand-in only publishes model repos, got {arguments['repo_type']}")
        return arguments

    @staticmethod
    def _http_error(status: int, message: str, url: str):
        import httpx2  # the HTTP library huggingface_hub's errors are built on
        from huggingface_hub.errors import HfHubHTTPError

        response = httpx2.Response(status, request=httpx2.Request("POST", url))
        return HfHubHTTPError(f"{status} Client Error: {message}", response=response, server_message=message)

    def create_repo(self, *args: Any, **kwargs: Any):
        from huggingface_hub import RepoUrl

        a = self._bind("create_repo", args, kwargs)
        repo_id = a["repo_id"]
        repo = self.mirror.repo_dir(repo_id)
        if repo.exists():
            if not a["exist_ok"]:
                raise self._http_error(409, f"You already created this model repo: {repo_id}",
                                       f"{self.mirror.url}/api/repos/create")
        else:
            repo.mkdir(parents=True)
            git(repo, "init", "-q", "-b", "main")
            (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
            git(repo, "add", ".gitattributes")
            git(repo, "commit", "-q", "-m", "initial commit")
        return RepoUrl(f"{self.mirror.url}/{repo_id}", endpoint=self.mirror.url)

    def upload_folder(self, *args: Any, **kwargs: Any):
        from huggingface_hub import CommitInfo
        from huggingface_hub.errors import RepositoryNotFoundError
        from huggingface_hub.utils import filter_repo_objects

        a = self._bind("upload_folder", args, kwargs)
        if a["create_pr"] or a["run_as_future"] or a["parent_commit"]:
            raise NotImplementedError("the mirror stand-in does not do PRs, futures or parent_commit")
        repo_id = a["repo_id"]
        repo = self.mirror.repo_dir(repo_id)
        if not repo.exists():
            err = self._http_error(404, f"Repository not found: {repo_id}", f"{self.mirror.url}/{repo_id}")
            raise RepositoryNotFoundError(str(err), response=err.response)
        folder = Path(a["folder_path"])
        prefix = (a["path_in_repo"] or "").strip("/")
        local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        local = [p for p in local if not p.startswith((".git/", ".cache/huggingface/"))]
        chosen = list(filter_repo_objects(local, allow_patterns=a["allow_patterns"],
                                          ignore_patterns=a["ignore_patterns"]))
        git(repo, "checkout", "-q", a["revision"] or "main")
        targets = {f"{prefix}/{rel}" if prefix else rel: rel for rel in chosen}
        if a["delete_patterns"]:
            tracked = git(repo, "ls-files").splitlines()
            for old in filter_repo_objects(tracked, allow_patterns=a["delete_patterns"]):
                if old not in targets and old != ".gitattributes":
                    git(repo, "rm", "-q", "--", old)
        for dest, rel in targets.items():
            (repo / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / rel, repo / dest)
            git(repo, "add", "--", dest)
        message = a["commit_message"] or "Upload folder using huggingface_hub"
        if git(repo, "status", "--porcelain"):
            git(repo, "commit", "-q", "-m", message, "-m", a["commit_description"] or "")
        sha = git(repo, "rev-parse", "HEAD")
        return CommitInfo(commit_url=f"{self.mirror.url}/{repo_id}/commit/{sha}", commit_message=message,
                          commit_description=a["commit_description"] or "", oid=sha, _endpoint=self.mirror.url)

    def create_tag(self, *args: Any, **kwargs: Any) -> None:
        a = self._bind("create_tag", args, kwargs)
        repo_id, tag = a["repo_id"], a["tag"]
        repo = self.mirror.repo_dir(repo_id)
        existing = git(repo, "tag", "--list", tag)
        if existing:
            if a["exist_ok"]:
                return None
            raise self._http_error(409, f"Tag reference refs/tags/{tag} already exists",
                                   f"{self.mirror.url}/api/models/{repo_id}/tag/{a['revision'] or 'main'}")
        target = a["revision"] or "main"
        if a["tag_message"]:
            git(repo, "tag", "-a", tag, "-m", a["tag_message"], target)
        else:
            git(repo, "tag", tag, target)
        return None


# --- hand-made model repos ------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CARD = """---
library_name: as-ai
license: apache-2.0
tags:
- ankylosing-spondylitis
- {kind}
- synthetic-data
---
# Test {kind} model

Trained on synthetic data for tests; not for clinical use.
"""


def finish_repo(folder: Path, cfg: dict[str, Any], files: list[str]) -> Path:
    """Write ``as_ai.json`` (with sha256 of ``files``) and a model card into ``folder``."""
    cfg = dict(cfg, files={rel: _sha256(folder / rel) for rel in files})
    cfg.setdefault("training", {})["synthetic"] = True
    (folder / "as_ai.json").write_text(json.dumps(cfg, indent=2))
    (folder / "README.md").write_text(CARD.format(kind=cfg["kind"]))
    return folder


def write_diagnosis_repo(folder: Path, *, arch: str = "mobilenetv3_small_050", members: int = 1,
                         seed: int = 0) -> Path:
    """A small diagnosis repo: timm members saved with ``save_for_hf`` (config.json + model.safetensors)."""
    import safetensors.torch
    import timm
    import torch
    from timm.models import save_for_hf

    folder.mkdir(parents=True, exist_ok=True)
    files, member_cfgs = [], []
    for i in range(members):
        torch.manual_seed(seed + i)
        model = timm.create_model(arch, pretrained=False, num_classes=2)
        name = f"m{i}"
        save_for_hf(model, folder / "members" / name, safe_serialization=True)
        files.append(f"members/{name}/model.safetensors")
        member_cfgs.append({"name": name, "arch": arch, "path": f"members/{name}", "weight": 1.0, "cv_auc": 0.5})
    safetensors.torch.save_file({"mean": torch.zeros(8), "cov": torch.eye(8)}, folder / "input_gate.safetensors")
    files.append("input_gate.safetensors")
    cfg = {"kind": "diagnosis", "format_version": 1, "labels": ["non-AS", "AS"], "members": member_cfgs,
           "combine": "mean", "preprocess": {"size": 224}, "calibration": {"method": "none"},
           "threshold": 0.5, "input_gate": {}, "metrics": {}, "training": {"synthetic": True, "seed": seed}}
    return finish_repo(folder, cfg, files)


def evil_pipeline():
    """A pipeline that would call ``os.system`` on its input: never fitted or run, only saved."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(os.system), Ridge())


def write_triage_repo(folder: Path, *, seed: int = 0, evil: bool = False) -> Path:
    """A small triage repo: two scikit-learn pipelines saved with skops.io.

    ``evil=True`` smuggles ``os.system`` into the BASFI pipeline (a FunctionTransformer), the kind of
    payload the skops allow-list must refuse.
    """
    import numpy as np
    import skops.io as sio
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3))
    for target, coef in (("basfi", [1.0, 0.5, 0.0]), ("basdai", [0.2, 1.0, 0.3])):
        y = X @ np.array(coef) + 4.0
        pipe = evil_pipeline() if evil and target == "basfi" else make_pipeline(StandardScaler(), Ridge()).fit(X, y)
        sio.dump(pipe, folder / f"{target}.skops")
    features = [{"name": n, "label": n, "unit": "", "min": -10, "max": 10, "type": "float"} for n in ("a", "b", "c")]
    cfg = {"kind": "triage", "format_version": 1, "features": features,
           "targets": {"basfi": {"file": "basfi.skops", "cutoff": 4.0, "interval": 1.0},
                       "basdai": {"file": "basdai.skops", "cutoff": 4.0, "interval": 1.0}},
           "curves": {}, "logrank": {}, "metrics": {}, "training": {"synthetic": True, "seed": seed}}
    return finish_repo(folder, cfg, ["basfi.skops", "basdai.skops"])
