# Two commands on a fresh machine:  make demo  (turnaround of the bundled sample on the sandbox)  and  make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build; ComfyUI users already have torch, so requirements.txt never lists it
TORCH ?= torch==2.13.0

.PHONY: demo test test-python test-web test-comfyui bench soak clean

$(VENV)/.ready: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/.ready
	$(PY) -m nodes.cli --sandbox --out runflow_out
	@echo "open runflow_out/contact_sheet.png"

test: test-python test-web

test-python: $(VENV)/.ready
	$(PY) -m pytest -q

test-web:
	node --test tests/web/

# needs a ComfyUI checkout + venv (../shared/comfyui-harness); skipped when COMFYUI_DIR is unset
test-comfyui: $(VENV)/.ready
	$(PY) -m pytest -q -m comfyui tests/comfyui

bench: $(VENV)/.ready
	$(PY) bench/benchmark.py

soak: $(VENV)/.ready
	$(PY) bench/soak.py

clean:
	rm -rf $(VENV) runflow_out .pytest_cache
