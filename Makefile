# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit cluster chaos fuzz-api fuzzy install clean bench bench-quick \
	lock wheelhouse

# Online installs take the exact versions and hashes of the lock files (`make lock` writes
# them): requirements.lock for the agent, requirements-test.lock for it plus the test tools.
$(STAMP): pyproject.toml requirements-test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-test.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## make lock: regenerate requirements.lock and requirements-test.lock from pyproject.toml
## with uv (universal: every platform, Python 3.11+). Pins already in the files are kept;
## `make lock UPGRADE=1` moves every package to its newest allowed version.
UV_VERSION := 0.13.9
TOOLS := .venv-tools
UV_COMPILE = $(TOOLS)/bin/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
lock:
	test -x $(TOOLS)/bin/uv || ($(PYTHON) -m venv $(TOOLS) \
		&& $(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION))
	$(UV_COMPILE) --extra test -o requirements-test.lock
	$(UV_COMPILE) --constraint requirements-test.lock -o requirements.lock

## make wheelhouse: everything an air-gapped server needs to install raftcron, for THIS
## Python version and machine architecture (see docs/install.md): the wheels of raftcron
## and of every locked dependency (pysyncobj's built here from its sdist) and a hash list.
WHEELHOUSE_TAG := $(shell $(PYTHON) -c 'import platform, sys; \
	print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
WHEELHOUSE_VENV := dist/.venv-$(WHEELHOUSE_TAG)
wheelhouse:
	test -x $(WHEELHOUSE_VENV)/bin/python || $(PYTHON) -m venv $(WHEELHOUSE_VENV)
	$(WHEELHOUSE_VENV)/bin/pip install --quiet --upgrade pip
	$(WHEELHOUSE_VENV)/bin/python packaging/build_wheelhouse.py \
		--out dist/wheelhouse-$(WHEELHOUSE_TAG)

## make demo: a local 3-node cluster with the example jobs; Ctrl-C stops it.
demo: $(STAMP)
	$(BIN)/raftcron dev --config cluster.example.toml

## make test: lint, type-check, then the whole suite: the in-process tests (unit, fuzzy) on
## 3 workers (they mostly wait on timeouts and subprocesses), then the tests that start real
## agents (cluster, chaos) one at a time, so that their agents are not starved of CPU; both
## parts run, and the target fails if either did. The slowest 25 of the second part are
## listed at its end (CI's time budget is 30 minutes: that list says where it goes).
IN_PROCESS := tests --ignore=tests/cluster --ignore=tests/chaos
test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -n 3 $(IN_PROCESS); a=$$?; \
	$(BIN)/pytest -q --durations=25 tests/cluster tests/chaos; b=$$?; \
	exit $$(( a || b ))

lint: $(STAMP)
	$(BIN)/ruff check raftcron tests bench examples packaging
	$(BIN)/ruff format --check raftcron tests bench examples packaging
	$(BIN)/python -m raftcron.docs_gen --check
	$(BIN)/python -m raftcron.api.docs_gen --check   # docs/api.md matches the OpenAPI document

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -n 3 tests/unit

cluster: $(STAMP)
	$(BIN)/pytest -q tests/cluster

## make chaos: the long soak (root): every nemesis for CHAOS_SECONDS, >= 1,000 fires each.
## Replay a failure with SEED=<the seed it printed>; pick nemeses with NEMESIS="a b".
CHAOS_SECONDS ?= 160
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.runner --duration $(CHAOS_SECONDS) --quiet 8 --fault 6 \
		--out chaos-out $(if $(SEED),--seed $(SEED)) \
		$(foreach n,$(NEMESIS),--nemesis $(n))

## make fuzzy: the Raft fuzzer (tests/fuzzy, in-process, no root) for FUZZY_STEPS steps of
## 10 ms fake time, on FUZZY_NODES (3 or 5) replicas, FUZZY_RUNS seeds from SEED on (default:
## a random one, printed). Replay a failure with the seed and steps it printed.
FUZZY_STEPS ?= 100000
FUZZY_NODES ?= 3
FUZZY_RUNS ?= 1
fuzzy: $(STAMP)
	$(BIN)/python -m tests.fuzzy.run --steps $(FUZZY_STEPS) --nodes $(FUZZY_NODES) \
		--runs $(FUZZY_RUNS) $(if $(SEED),--seed $(SEED))

## make fuzz-api: schemathesis against a 3-node cluster with tokens, in a network
## namespace (root), for FUZZ_SECONDS (make test runs it for 60 s). Output in fuzz-api-out/.
FUZZ_SECONDS ?= 1200
fuzz-api: $(STAMP)
	$(BIN)/python -m tests.cluster.fuzz_api --max-time $(FUZZ_SECONDS) --out fuzz-api-out \
		$(if $(SEED),--seed $(SEED))

## make bench: raftcron vs etcd vs Redis vs the fork/exec floor on loopback (installs them
## if missing); about 55 min on an idle machine (the estimate per workload is printed at the
## start). Writes bench/results/<date>.json, then docs/benchmarks.md and docs/img/bench/*.png
## from that file alone.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml bench/install.sh | $(STAMP)
	sh bench/install.sh
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	BENCH_COMMAND="make bench" $(BIN)/python -m bench.run

## make bench-quick: the same workloads at small sizes (about 6 minutes), output in
## bench/results/scratch/ (gitignored); never docs/benchmarks.md.
bench-quick: $(STAMP) $(BENCH_STAMP)
	BENCH_COMMAND="make bench-quick" $(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) $(TOOLS) raftcron-data chaos-out fuzz-api-out .pytest_cache .mypy_cache .ruff_cache
