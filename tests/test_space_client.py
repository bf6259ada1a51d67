"""The Space as a service: ``python space/app.py`` in a subprocess on a free loopback port, called with
``gradio_client`` through its named endpoints ``/diagnose`` and ``/triage``.

This is how scripts and other programs use a deployed Space; it also checks that the app honours
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, serves without network access, and answers bad input with a
readable message rather than a traceback.
"""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from _space_server import START_TIMEOUT_S, free_port, space_env, start_space  # noqa: E402
from test_space_handlers import load_space_app, valid_patient  # noqa: E402

from as_ai.errors import SyntheticModelWarning  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``python space/app.py`` with GRADIO_SERVER_PORT set, offline; yields (client, url, log)."""
    try:
        server = start_space(tmp_path_factory.mktemp("space_log") / "server.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield Client(server.url, verbose=False, download_files=False), server.url, server.log
    finally:
        server.stop()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The app module and the models it serves, to compare the endpoints' answers with the library's."""
    app = load_space_app()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticModelWarning)
        warnings.simplefilter("ignore", UserWarning)
        models = app.load_models()
    radiographs, _ = app.make_examples(tmp_path_factory.mktemp("client_examples"))
    return app, models, radiographs


def test_named_endpoints_are_documented(served, library):
    client, _, _ = served
    _, models, _ = library
    api = client.view_api(print_info=False, return_format="dict")
    named = api["named_endpoints"]
    assert {"/diagnose", "/triage"} <= set(named)
    params = named["/triage"]["parameters"]
    assert [p["parameter_name"] for p in params] == models.triager.schema.names
    description = named["/triage"]["description"]
    for p, f in zip(params, models.triager.schema.features):   # numbers are numbers; units and rules described
        assert p["parameter_default"] is None
        if f.type == "bool":
            assert "bool" in p["python_type"]["type"], p
        else:
            assert "float" in p["python_type"]["type"] and "str" not in p["python_type"]["type"], p
            assert f"- {f.name}: {f.label}" in description and (not f.unit or f"({f.unit})" in description)


def test_diagnose_endpoint(served, library):
    client, _, _ = served
    _, models, radiographs = library
    finding, members, check, heatmap, result = client.predict(handle_file(radiographs[0]), "Grad-CAM (fast)",
                                                                 api_name="/diagnose")
    expected = models.diagnoser(radiographs[0])
    assert result["label"] == expected.label
    assert result["probability"] == pytest.approx(expected.probability, abs=1e-6)
    assert result["threshold"] == pytest.approx(expected.threshold)
    assert set(result["members"]) == set(expected.members)
    assert result["model"] == expected.model
    assert check.startswith("**Input check:**")
    if expected.label != "indeterminate":
        assert f"{expected.threshold:.3f}" in finding
        if models.explain_available:
            assert heatmap is not None and result["explanation"]["method"] == "gradcam"


def test_text_file_as_radiograph_gets_a_readable_error(served, tmp_path):
    client, _, log = served
    notes = tmp_path / "notes.png"
    notes.write_text("Patient notes: back pain since 2019. Not an image.")
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(notes)), "None", api_name="/diagnose")
    message = str(info.value)
    assert "Unsupported image format" in message and "DICOM" in message, message
    assert "Traceback" not in message


def test_triage_endpoint(served, library):
    client, _, _ = served
    _, models, _ = library
    patient = valid_patient(models)
    scores, risk, plot, result = client.predict(api_name="/triage", **patient)   # None: unknown
    expected = models.triager(patient)
    assert result["basfi"] == pytest.approx(expected.basfi) and result["basdai"] == pytest.approx(expected.basdai)
    assert 0.0 <= result["basfi"] <= 10.0
    assert result["groups"] == expected.groups and result["risk"] == expected.risk
    assert result["imputed"] == expected.imputed
    assert f"**{expected.basfi:.1f}**" in scores
    typed = {k: (v == "yes" if isinstance(v, str) else v) for k, v in patient.items()}   # yes/no as booleans
    assert client.predict(api_name="/triage", **typed)[3]["basfi"] == pytest.approx(expected.basfi)
    assert plot["path"].endswith(".png")


def test_out_of_range_triage_input_gets_a_readable_error(served, library):
    client, _, _ = served
    _, models, _ = library
    form = dict(valid_patient(models))
    feats = [f for f in models.triager.schema.features if f.type != "bool"]
    too_high, too_low = feats[0], feats[-1]
    form[too_high.name] = too_high.max * 10 + 1
    form[too_low.name] = too_low.min - 5
    with pytest.raises(AppError) as info:
        client.predict(api_name="/triage", **form)
    message = str(info.value)
    for f in (too_high, too_low):
        assert f.name in message and f.label in message, message
    assert "above the maximum" in message and "below the minimum" in message
    assert "Traceback" not in message


def test_missing_model_stops_the_space_with_a_readable_message(tmp_path):
    env = space_env(GRADIO_SERVER_PORT=str(free_port()), AS_AI_DIAGNOSIS_MODEL=str(tmp_path / "no-such-model"))
    proc = subprocess.run([sys.executable, str(ROOT / "space" / "app.py")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=START_TIMEOUT_S)
    assert proc.returncode != 0
    assert "cannot start, a model failed to load" in proc.stderr and "no-such-model" in proc.stderr
    assert "Traceback" not in proc.stderr
