# Two commands do everything on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: pip takes the CPU build already on disk on a CPU-only
# development machine, and the default (CUDA) build from the package index on a GPU machine.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test test-slow lint bench figures clean

$(BIN)/grokkit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/grokkit

install: $(BIN)/grokkit

demo: install
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/grokkit fit --config configs/quickstart.yaml

test: install
	$(BIN)/ruff check grokkit tests benchmarks
	WANDB_MODE=disabled $(BIN)/pytest -q

test-slow: install
	WANDB_MODE=disabled $(BIN)/pytest -q -m slow

bench: install
	WANDB_MODE=disabled $(BIN)/python benchmarks/overhead.py
	WANDB_MODE=disabled $(BIN)/python benchmarks/callbacks_cost.py
	WANDB_MODE=disabled $(BIN)/python benchmarks/flow.py
	WANDB_MODE=disabled $(BIN)/python benchmarks/ntk_e3.py
	WANDB_MODE=disabled $(BIN)/python benchmarks/ensemble.py

# Every figure panel of the paper at its own scale, one run at a time on every core, so that
# each run is as fast as it gets (grokkit figures; FIGURES_ARGS="--only 1a,3" for some panels,
# "--jobs 2" for ~1.4x the throughput on 2 cores, each run slower).
FIGURES_ARGS ?= --jobs 1
figures: install
	WANDB_MODE=$${WANDB_MODE:-disabled} $(BIN)/grokkit figures $(FIGURES_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
