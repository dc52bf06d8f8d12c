# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit cluster chaos fuzz-api install clean bench bench-quick

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make demo: a local 3-node cluster with the example jobs; Ctrl-C stops it.
demo: $(STAMP)
	$(BIN)/raftcron dev --config cluster.example.toml

## make test: lint, type-check, then the whole suite (unit + real-process cluster tests).
test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check raftcron tests bench examples
	$(BIN)/ruff format --check raftcron tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

cluster: $(STAMP)
	$(BIN)/pytest -q tests/cluster

## make chaos: the long soak (root): every nemesis for CHAOS_SECONDS, >= 1,000 fires each.
## Replay a failure with SEED=<the seed it printed>; pick nemeses with NEMESIS="a b".
CHAOS_SECONDS ?= 160
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.runner --duration $(CHAOS_SECONDS) --quiet 8 --fault 6 \
		--out chaos-out $(if $(SEED),--seed $(SEED)) \
		$(foreach n,$(NEMESIS),--nemesis $(n))

## make fuzz-api: schemathesis against a 3-node cluster with tokens, in a network
## namespace (root), for FUZZ_SECONDS (make test runs it for 90 s). Output in fuzz-api-out/.
FUZZ_SECONDS ?= 1200
fuzz-api: $(STAMP)
	$(BIN)/python -m tests.cluster.fuzz_api --max-time $(FUZZ_SECONDS) --out fuzz-api-out \
		$(if $(SEED),--seed $(SEED))

## make bench: raftcron vs etcd vs Redis on loopback (installs them if missing); ~60 min.
## Writes bench/results/<date>.json, docs/benchmarks.md and docs/img/bench/*.png.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml bench/install.sh | $(STAMP)
	sh bench/install.sh
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	BENCH_COMMAND="make bench" $(BIN)/python -m bench.run

## make bench-quick: the same workloads at small sizes (under 3 minutes), output in
## bench/results/scratch/ (gitignored).
bench-quick: $(STAMP) $(BENCH_STAMP)
	BENCH_COMMAND="make bench-quick" $(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) raftcron-data chaos-out fuzz-api-out .pytest_cache .mypy_cache .ruff_cache
