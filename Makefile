# unet-rt — the two commands:  make demo   |   make test
# Both create .venv (if needed), install what the project needs from PyPI (torch 2.13.0 CPU for
# the trainer and the reference tests), build the native core with scikit-build-core and run.
# A second run only rebuilds what changed.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PYTHON  := $(BIN)/python
DEPS    := $(VENV)/.deps-stamp
DEMO_IN := data/samples/image/25.png
JOBS    ?= 2

.PHONY: all demo test test-fast bench ablation install cpp clean help

help:
	@echo "make demo   - set up, then segment a shipped ISBI 2012 sample with the shipped model (out/demo/)"
	@echo "make test   - set up, then run the test suite (Python + C/C++ example)"
	@echo "make bench  - set up, then run the benchmarks (pytest bench/ --benchmark-only), JSON in out/bench.json"
	@echo "make ablation - set up, then train both recipes briefly on three synthetic data sets against Otsu (~20 min)"

$(PYTHON):
	$(PY) -m venv $(VENV)

# Dependencies: re-installed only when pyproject.toml changes.
$(DEPS): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
	$(PYTHON) -m pip install -q $$($(PYTHON) -c "import tomllib;d=tomllib.load(open('pyproject.toml','rb'))['project'];print(' '.join(repr(x) for x in d['dependencies']+d['optional-dependencies']['dev']))" | tr -d "'")
	# elasticdeform's wheel is built against NumPy 1.x: build it from source (test reference only)
	$(PYTHON) -m pip install -q --no-binary elasticdeform elasticdeform
	touch $@

# The package itself (native core included); the build directory build/py makes this incremental.
install: $(DEPS)
	$(PYTHON) -m pip install -q --no-build-isolation --no-deps .

demo: install
	@mkdir -p out/demo
	$(BIN)/unet-rt info unet_rt/models/isbi2012-unet16.plan
	$(BIN)/unet-rt segment $(DEMO_IN) -o out/demo/25-labels.png --overlay --scale
	$(BIN)/unet-rt evaluate --data data/samples --slices 25-29
	@echo "demo: wrote out/demo/25-labels.png and out/demo/25-labels-overlay.png"

test: install
	cd tests && ../$(PYTHON) -m pytest -q -p no:cacheprovider

bench: install
	@mkdir -p out
	cd bench && ../$(PYTHON) -m pytest -q --benchmark-only --benchmark-json=../out/bench.json
	$(PYTHON) bench/report.py out/bench.json

# Recipes on data they were not tuned on (README: Accuracy). Run outside the source tree so that the
# installed package (with its compiled core) is imported.
ablation: install
	@mkdir -p out/ablation
	cd out/ablation && ../../$(PYTHON) -m training.ablation --recipe default --steps 300 --out default --check
	cd out/ablation && ../../$(PYTHON) -m training.ablation --recipe paper --steps 300 --out paper

clean:
	rm -rf build out .pytest_cache
