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

.PHONY: all demo test test-fast bench bench-dask kbench ablation finetune-ablation install cpp clean help fuzz fuzz-merge

help:
	@echo "make demo   - set up, then segment a shipped ISBI 2012 sample with the shipped model (out/demo/)"
	@echo "make test   - set up, then run the test suite (Python + C/C++ example)"
	@echo "make bench  - set up, then run the benchmarks (pytest bench/ --benchmark-only), JSON in out/bench.json"
	@echo "make kbench - build and run the kernel micro-benchmark (GFLOP/s per kernel vs the measured peak)"
	@echo "make ablation - set up, then train both recipes briefly on three synthetic data sets against Otsu (~20 min)"
	@echo "make finetune-ablation - fine-tuning the shipped model vs training from scratch, few/partly annotated images (~16 h)"
	@echo "make fuzz   - libFuzzer + ASan/UBSan campaign on the model reader and the image entry points (needs clang)"

$(PYTHON):
	$(PY) -m venv $(VENV)

# Dependencies: re-installed only when pyproject.toml changes.
$(DEPS): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
	$(PYTHON) -m pip install -q "tomli>=1.1; python_version < '3.11'"   # pyproject reader for Python 3.10
	$(PYTHON) -c "import sys;t=__import__('tomllib' if sys.version_info>=(3,11) else 'tomli');d=t.load(open('pyproject.toml','rb'))['project'];open('$(VENV)/requirements-dev.txt','w').write('\n'.join(d['dependencies']+d['optional-dependencies']['dev'])+'\n')"
	$(PYTHON) -m pip install -q -r $(VENV)/requirements-dev.txt
	# elasticdeform's wheel is built against NumPy 1.x: build it from source (test reference only)
	$(PYTHON) -m pip install -q --no-binary elasticdeform elasticdeform
	touch $@

# The package itself (native core included); the build directory build/py makes this incremental.
# The test-only bindings (unet_rt._kernels, csrc/python/kernels.cc) are built alongside but are not in
# the wheel: they are copied into this venv only (tests/test_wheel_contents.py).
install: $(DEPS)
	$(PYTHON) -m pip install -q --no-build-isolation --no-deps -C cmake.define.UNET_RT_TEST_BINDINGS=ON .
	cp build/py/_kernels$$($(PYTHON) -c "import sysconfig;print(sysconfig.get_config_var('EXT_SUFFIX'))") \
	  $$($(PYTHON) -c "import sysconfig;print(sysconfig.get_paths()['platlib'])")/unet_rt/

demo: install
	@mkdir -p out/demo
	$(BIN)/unet-rt info src/unet_rt/models/isbi2012-unet16.plan
	$(BIN)/unet-rt segment $(DEMO_IN) -o out/demo/25-labels.png --overlay
	$(BIN)/unet-rt evaluate --data data/samples --slices 25-29
	@echo "demo: wrote out/demo/25-labels.png and out/demo/25-labels-overlay.png"

test: install
	cd tests && ../$(PYTHON) -m pytest -q -p no:cacheprovider

bench: install
	@mkdir -p out
	cd bench && ../$(PYTHON) -m pytest -q --benchmark-only --benchmark-json=../out/bench.json
	$(PYTHON) bench/report.py out/bench.json

kbench: $(DEPS)
	cmake -S . -B build/kbench -DUNET_RT_KBENCH=ON -DUNET_RT_SHARED=OFF -DCMAKE_BUILD_TYPE=Release > /dev/null
	cmake --build build/kbench -j$(JOBS) --target kbench
	build/kbench/kbench

# unet_rt.scale: one Engine vs 1 and 2 dask worker processes on 4096^2 and 8192^2 zarr images (not in make test)
bench-dask: install
	@mkdir -p out
	cd out && ../$(PYTHON) ../bench/dask_bench.py --out bench-dask

# Recipes on data they were not tuned on (README: Accuracy). Run outside the source tree so that the
# installed package (with its compiled core) is imported.
ablation: install
	@mkdir -p out/ablation
	cd out/ablation && ../../$(PYTHON) -m unet_rt.train.ablation --recipe default --steps 300 --out default --check
	cd out/ablation && ../../$(PYTHON) -m unet_rt.train.ablation --recipe paper --steps 300 --out paper

# Fine-tuning vs training from scratch (docs/finetuning.md): 3 synthetic kinds x 1, 2, 5 training images x
# 10%, 30%, 100% of the objects annotated; the shipped model as it is, fine-tuned for 5 minutes, and a
# model trained from scratch for 30 minutes: 27 x ~36 min, about 16 hours on 2 idle cores (not in make test).
FINETUNE_THREADS ?= 2
finetune-ablation: install
	@mkdir -p out/finetune-ablation
	cd out/finetune-ablation && ../../$(PYTHON) -m unet_rt.train.finetune_ablation --out . --threads $(FINETUNE_THREADS) \
	  --minutes 5 --scratch-minutes 30

# Fuzzing campaign (docs/fuzzing.md): FUZZ_RUNS executions per target, nice'd; new corpus entries
# go to build/fuzz/corpus/; `make fuzz-merge` minimises them into tests/corpus/ (replayed by make test).
FUZZ_RUNS ?= 1000000
FUZZ_TARGETS ?= model_reader image tiler
fuzz:
	@command -v clang++ >/dev/null || { echo "make fuzz needs clang with libFuzzer (Debian/Ubuntu: apt-get install -y clang)"; exit 1; }
	cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DUNET_RT_FUZZ=ON \
	  -DUNET_RT_SHARED=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	nice cmake --build build/fuzz -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@mkdir -p build/fuzz/logs
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t tests/corpus/$$t; \
	  echo "fuzz_$$t: $(FUZZ_RUNS) runs, log build/fuzz/logs/$$t.log"; \
	  nice -n 19 build/fuzz/fuzz_$$t -runs=$(FUZZ_RUNS) -dict=csrc/fuzz/$$t.dict -max_len=8192 -timeout=20 \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build/fuzz/ \
	    build/fuzz/corpus/$$t tests/corpus/$$t > build/fuzz/logs/$$t.log 2>&1 || { tail -40 build/fuzz/logs/$$t.log; exit 1; }; \
	  grep -E "stat::number_of_executed_units|cov:" build/fuzz/logs/$$t.log | tail -2; \
	done

# Hand-named files (seeds, reproducers of findings: any name that is not libFuzzer's SHA-1) are kept as they are.
fuzz-merge:
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/merged/$$t build/fuzz/keep/$$t && rm -f build/fuzz/merged/$$t/* build/fuzz/keep/$$t/*; \
	  find tests/corpus/$$t -type f ! -regex '.*/[0-9a-f]\{40\}' -exec cp {} build/fuzz/keep/$$t/ \; ; \
	  build/fuzz/fuzz_$$t -merge=1 -max_len=8192 build/fuzz/merged/$$t tests/corpus/$$t build/fuzz/corpus/$$t >/dev/null 2>&1; \
	  rm -f tests/corpus/$$t/* && cp build/fuzz/merged/$$t/* tests/corpus/$$t/ && cp -f build/fuzz/keep/$$t/* tests/corpus/$$t/ 2>/dev/null; \
	  echo "tests/corpus/$$t: $$(ls tests/corpus/$$t | wc -l) files, $$(du -sh tests/corpus/$$t | cut -f1)"; \
	done

clean:
	rm -rf build out .pytest_cache
