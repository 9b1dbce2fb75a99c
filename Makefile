# Two commands on a fresh machine:  make demo  (turnaround of the bundled sample on the sandbox)  and  make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build; ComfyUI users already have torch, so requirements.txt never lists it
TORCH ?= torch==2.13.0

.PHONY: demo test lint test-python test-web validate test-comfyui bench bench-comfyui soak catalog clean

$(VENV)/.ready: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/.ready
	$(PY) -m nodes.cli --sandbox --out runflow_out
	@echo "open runflow_out/index.html (views, contact sheet and turntable in runflow_out/sample/)"

test: lint test-python test-web validate

lint: $(VENV)/.ready
	$(VENV)/bin/ruff check .

test-python: $(VENV)/.ready
	$(PY) -m pytest -q

test-web:
	node --test tests/web/

# the registry's own checks (comfy-cli from PyPI, in its own venv so its pins never touch the test venv)
.venv-comfycli/.ready:
	$(PYTHON) -m venv .venv-comfycli
	.venv-comfycli/bin/python -m pip install -q comfy-cli
	touch $@

validate: .venv-comfycli/.ready
	.venv-comfycli/bin/comfy --skip-prompt --no-enable-telemetry node validate

# needs a ComfyUI checkout + venv (../shared/comfyui-harness/setup.sh); skipped when COMFYUI_DIR is unset.
# Starts ComfyUI on port 8188 with comfy-up, runs against the in-process sandbox, stops it; prints measured figures.
COMFY_HOME ?= $(HOME)/.cache/comfyui-harness
test-comfyui:
	COMFYUI_DIR=$(COMFY_HOME)/ComfyUI $(COMFY_HOME)/venv/bin/python -m pytest tests/comfyui -q

bench: $(VENV)/.ready
	$(PY) bench/benchmark.py

# issue 12's table inside a real ComfyUI (3 fresh ComfyUI starts on port 8200; COMFYUI_DIR = a private copy if
# another ComfyUI runs from the shared one)
COMFYUI_DIR ?= $(COMFY_HOME)/ComfyUI
bench-comfyui:
	COMFYUI_DIR=$(COMFYUI_DIR) $(COMFY_HOME)/venv/bin/python bench/comfy_bench.py

soak: $(VENV)/.ready
	$(PY) bench/soak.py

catalog: $(VENV)/.ready
	$(PY) bench/catalog.py

clean:
	rm -rf $(VENV) .venv-comfycli runflow_out .pytest_cache
