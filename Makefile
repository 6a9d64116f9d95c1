# Two commands on a fresh clone (Python 3.11 only): `make demo` and `make test`.
# Each creates/refreshes .venv by itself; torch comes first and pinned, since a looser pin
# pulls a multi-GB CUDA build (torch==2.13.0 is a CPU wheel on local disk here).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= dev,openvino,ncnn,ncnn-export,litert,litert-export,executorch
TORCH  ?= torch==2.13.0
# pytest workers (pytest-xdist), one per core of a 2-core CI machine; a test file stays on one worker
JOBS   ?= 2

.PHONY: venv demo lint test test-all bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=68" wheel
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py $(if $(WEIGHTS),--weights $(WEIGHTS))

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n $(JOBS) --dist loadfile

test-all: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .venv38 build *.egg-info .pytest_cache demo_out
