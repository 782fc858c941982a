# Set-up-and-go targets. Each creates the virtual environment and installs what it
# needs, so they work on a fresh machine: `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: demo-onnx serve-demo wheel-check bench-cold-start bench-events mutation test-ray-faults triton-env test-triton bench-triton bench-stream demo test test-slow test-gpu lint format bench bench-quick clean install-dev install-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Main job: export the bundled demo model to ONNX, then classify the bundled sample WAVs.
install-demo: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[cpu,export]" "torch==2.13.0"

demo: install-demo
	mkdir -p $(OUT)
	$(BIN)/ast-export --checkpoint demo --overwrite $(OUT)/demo.onnx
	$(BIN)/ast-classify $(OUT)/demo.onnx $$($(BIN)/python -m ast_onnx.data.samples) --top-k 3

# The demo model bundled in the wheel (src/ast_onnx/data/demo.onnx): the demo checkpoint
# exported to fp32 ONNX. Rerun after retraining the checkpoint; tests/package/test_demo_onnx.py
# fails while the two disagree.
demo-onnx: install-demo
	$(BIN)/ast-export --checkpoint demo --overwrite -q src/ast_onnx/data/demo.onnx

# A local Triton server on the demo model (python backend, CPU), in the foreground on
# 127.0.0.1 (HTTP 8000, gRPC 8001, metrics 8002; Ctrl-C stops it). Works after `make demo`.
serve-demo: install-demo triton-env
	mkdir -p $(OUT)
	$(BIN)/ast-export --checkpoint demo --overwrite $(OUT)/demo.onnx \
		--triton-repo $(OUT)/triton --triton-backend python --triton-cpu
	$(TRITON_VENV)/bin/ast-triton serve $(OUT)/triton

# The wheel as a `pip install "ast-onnx[cpu]"` user gets it: built, installed into a fresh
# venv (no torch), the bundled samples classified by the bundled demo model (~1 min).
wheel-check: install-dev
	PYTHON=$(BIN)/python tools/wheel_check.sh

# Cold start of `ast-classify demo CLIP` vs transformers' pipeline, fresh processes,
# alternating, medians and their ratio (benchmarks/RESULTS.md).
bench-cold-start: install-dev
	$(BIN)/python benchmarks/bench_cold_start.py

# A stamp so that several targets in one `make` call install once (redone when
# pyproject.toml changes).
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install-dev: $(VENV)/.dev-installed

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Tests: lint, the fast suite (slow and GPU tests are deselected by default), then a
# quick ast-bench of the demo model with the int8 gate: every int8 form keeps
# top-1 agreement >= 99 % and accuracy within 1 point (reports in $(OUT)/bench-quick.*).
test: lint triton-env
	AST_ONNX_TRITON_VENV=$(abspath $(TRITON_VENV)) $(BIN)/python -m pytest -q
	$(MAKE) test-ray-faults
	$(MAKE) bench-quick

# Ray under faults: a simulated 3-node cluster, a scoring actor killed, the driver killed
# with SIGKILL and resumed (~1.5 min; part of make test).
test-ray-faults: install-dev
	$(BIN)/python -m pytest -q -m ray_faults

bench-quick: install-dev
	mkdir -p $(OUT)
	$(BIN)/ast-bench demo --quick --precisions fp32,int8,int8-static --cache-dir $(OUT)/cache \
		--report $(OUT)/bench-quick.md --json $(OUT)/bench-quick.json --max-drift top1=0.99,drop=0.01

TRITON_VENV ?= .venv-triton

# The local Triton server's environment (tests/integrations/triton/test_triton_server.py):
# the system Python, numpy < 2, nvidia-pytriton, this package (editable). Built by
# `make test` on a fresh machine (about a minute; apt-get installs libpython3.X when missing).
$(TRITON_VENV)/.installed: pyproject.toml tools/triton_env.sh
	tools/triton_env.sh $(TRITON_VENV)
	touch $@

triton-env: $(TRITON_VENV)/.installed

test-triton: install-dev triton-env
	AST_ONNX_TRITON_VENV=$(abspath $(TRITON_VENV)) $(BIN)/python -m pytest -q -m triton_server

bench-triton: install-dev triton-env
	$(BIN)/python benchmarks/bench_triton.py

# Mutation testing (mutmut) of the drift gate, windows, activations, top-k and metadata;
# not part of make test (~2 min on 2 cores; TESTING.md has the scores and survivors).
# Every module of [tool.mutmut] only_mutate (TESTING.md: about 1 h 30 min on the shared
# 2-core VM); a subset with e.g. MUTANTS='"ast_onnx.quality*" "ast_onnx.metadata*"'.
mutation: install-dev
	rm -rf mutants
	nice -n 10 $(BIN)/mutmut run --max-children 2 $(or $(MUTANTS),"ast_onnx.quality*" "ast_onnx.runtime*" "ast_onnx.metadata*" "ast_onnx.frontend*" "ast_onnx.export.original*")
	$(BIN)/mutmut results

test-slow: install-dev
	$(BIN)/python -m pytest -q -m slow

# On a GPU box (README: GPU boxes): onnxruntime-gpu alone (no [cpu], so not the dev
# install), the export side for the tests' models; then tools/gpu_check.py writes
# $(OUT)/gpu/report.md and .json. Without a GPU it says so and exits 0.
GPU_VENV ?= .venv-gpu
$(GPU_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/pip install --quiet -e ".[gpu,export]" pytest
	touch $@

test-gpu: $(GPU_VENV)/.installed
	$(GPU_VENV)/bin/python tools/gpu_check.py --out $(OUT)/gpu

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-dev
	$(BIN)/python -m pytest benchmarks/ --benchmark-only -q

# Streaming: real-time factor and event emission latency per hop (benchmarks/RESULTS.md).
bench-events: install-dev
	$(BIN)/python benchmarks/bench_events.py

bench-stream: install-dev
	$(BIN)/python -m pytest benchmarks/bench_stream.py -s -q

clean:
	rm -rf $(VENV) $(TRITON_VENV) $(GPU_VENV) $(OUT) .pytest_cache .ruff_cache .benchmarks
