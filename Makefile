# Two commands on a fresh machine: `make book` (the main job) and `make test` (the test suite).
# Each creates .venv from the project's own files when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= test,minilm,book,bench
PYTEST_ARGS ?=

.PHONY: venv test test-fast book clean-book clean run run-smoke bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

book: $(STAMP)
	$(BIN)/jupyter-book build . --path-output _build_book --all -W -n --keep-going

clean-book:
	rm -rf _build_book

clean: clean-book
	rm -rf $(VENV) .pytest_cache

# Execute the notebooks for a profile into book/experiments (skips unchanged ones).
#   make run PROFILE=mini            make run PROFILE=mini ONLY=transfer
#   make run PROFILE=mini OVERRIDES='{"seeds": [0]}'
PROFILE ?= mini
ONLY ?=
OVERRIDES ?=
run: $(STAMP)
	$(BIN)/python -m lib.runner --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(OVERRIDES),-p 'overrides=$(OVERRIDES)')

run-smoke: $(STAMP)
	$(BIN)/python -m lib.runner --profile smoke --out _build_smoke/experiments --results _build_smoke/results

# Benchmarks (side-by-side ratios, JSON under benchmarks/results), then the book's Performance page.
bench: $(STAMP)
	cd benchmarks && ../$(BIN)/python tuning_vs_peft.py --model all-MiniLM-L6-v2 --accuracy-steps 100
	cd benchmarks && ../$(BIN)/python tuning_vs_peft.py --model roberta-base-random --batch 8 --steps 3 --rounds 2
	cd benchmarks && ../$(BIN)/python predictivity_memory.py --sizes 1000 5000
	cd benchmarks && ../$(BIN)/python roofline.py
	$(BIN)/python -m papermill notebooks/performance.ipynb book/performance.ipynb --cwd . -k python3
