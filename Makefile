# The README's two commands: `make demo` and `make test`. Both set everything up first
# (Debian packages, a .venv with the project and its extras) and are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the project needs: Icarus Verilog for the cocotb RTL tests.
APT_PACKAGES := iverilog
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test test-fast test-slow lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[all]'
	touch $(STAMP)

demo: setup
	$(BIN)/llmcosim demo --model llama2-7b --prefill 128 --decode 512 --out reports/out

# Everything but the `slow` and `gpu` layers (gpu tests skip themselves without CUDA).
test: setup
	$(BIN)/python -m pytest -m "not slow" -n 2 -q

# The fast layer alone: no torch, no simulators (seconds).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not torch and not hdl and not gpu" -q

test-slow: setup
	$(BIN)/python -m pytest -m slow -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/trace_bench.py

clean:
	rm -rf $(VENV) build sim_build reports/out .pytest_cache
