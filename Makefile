# Two commands do all setup: `make train` (main job on the shipped sample) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ZOO    ?= lightgbm,xgboost,lstm,cnn,transformer

.PHONY: setup train test test-all test-slow lint docs docs-build benchmark bench-store bench-walkforward bench-execution bench-nightly nightly mlflow-ui clean

setup: $(STAMP)

# torch first: the CPU wheel lies on local disk; a plain resolve could fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements-lock.txt -e '.[dev,docs]'
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m huracan.train model=$(ZOO) -m

# Two test tiers. `make test`: the fast tier (every test not marked slow), in TEST_WORKERS
# pytest-xdist processes (one test file per worker at a time: module fixtures are built once),
# which must import every module of huracan/ (--check-imports, tests/tier_imports.py).
# `make test-all`: everything, serially. `make test-slow`: only the slow tier (CI, after
# `make test`). PYTEST_ARGS adds options; TEST_WORKERS=0 runs the fast tier serially.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -m "not slow" --check-imports -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check huracan tests benchmarks
	$(VENV)/bin/mypy huracan

benchmark: $(STAMP)
	$(PY) benchmarks/zoo_breakdown.py
	$(PY) benchmarks/validation.py
	$(PY) benchmarks/sizer_env_speed.py
	$(PY) benchmarks/labels_timing.py

bench-store: $(STAMP)
	$(PY) benchmarks/bulk_ingest.py

# walk-forward: FreqAI parity (70 fits) and the walk-forward zoo on the shipped sample
bench-walkforward: $(STAMP)
	$(PY) benchmarks/walkforward_parity.py
	$(PY) benchmarks/zoo_breakdown.py --extra experiment=walkforward_btc_1h --out benchmarks/results/zoo_walkforward.json

# the execution report: BTC/ETH/LTC 1h 2019-2024 walk-forward under every fill (about 2-4 min)
bench-execution: $(STAMP)
	nice -n 5 $(PY) benchmarks/execution_report.py

# the nightly pipeline on the shipped sample, offline (a rerun the same day only reports)
nightly: $(STAMP)
	$(PY) -m huracan.nightly experiment=nightly/sample

# the offline nightly over 1, 2 and 4 symbols, sequential vs joblib (about 20 min)
bench-nightly: $(STAMP)
	$(PY) benchmarks/nightly_scaling.py

# Job execution off: Huracan uses no MLflow server jobs, which would start 7 huey consumers
# (~240 MB each); one worker is plenty for one user. MLFLOW_UI_PORT=5001 make mlflow-ui
mlflow-ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui \
	    --backend-store-uri sqlite:///mlruns/mlflow.db --port $${MLFLOW_UI_PORT:-5000} --workers 1

# The documentation site (mkdocs.yml, docs/): serve it at http://127.0.0.1:8000 with live reload,
# or build it into site/ as CI does (--strict: a broken link or a docstring warning fails).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf outputs multirun site .pytest_cache .mypy_cache .ruff_cache
