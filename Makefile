# as-ai — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: test test-slow install demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,space,train]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The Space on http://127.0.0.1:7860 with the bundled (phantom-trained) demo models, offline.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 GRADIO_SERVER_NAME=$${GRADIO_SERVER_NAME:-127.0.0.1} GRADIO_SERVER_PORT=$${GRADIO_SERVER_PORT:-7860} \
		$(PY) space/app.py

# Benchmarks: every speed figure measured side by side with its baseline in one run.
bench: $(STAMP)
	$(PY) -m pytest -q -s -p no:cacheprovider -m benchmark -o python_files='bench_*.py' tests/benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
