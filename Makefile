# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY      := .venv/bin/python
STAMP   := .venv/.installed
CYCLE   := 2026-11
DEMO    := fixtures/demo

.PHONY: install demo test lint bench compare browser fixtures golden clean

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium drives the browser tests; playwright's own browser download is not used.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -q && apt-get install -y -q chromium) >/dev/null 2>&1 || \
	  (sudo apt-get update -q && sudo apt-get install -y -q chromium); }

demo: install
	rm -f out/demo.duckdb
	.venv/bin/reconcile --workspace out/demo.duckdb run --cycle $(CYCLE) \
	  --autotask $(DEMO)/autotask/invoices.xml --halopsa $(DEMO)/halopsa/api \
	  --map $(DEMO)/mapping.csv --config $(DEMO)/reconcile.toml --out out/$(CYCLE); \
	  rc=$$?; [ $$rc -le 1 ] || exit $$rc

test: install browser
	$(PY) -m pytest -q

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy reconcile rules tests fixtures/generate.py bench

# Realistic cycles at 20k and 1M lines per side, the report and the crosswalk; other sizes with
# BENCH, e.g. make bench BENCH="20k 1m 10m" (bench/bench.py --help).
bench: install
	$(PY) bench/bench.py $(BENCH)

# Same outputs as git revision AGAINST, byte for byte, on the demo and a realistic cycle:
# make compare AGAINST=main~3 [COMPARE_SIZE=100k]
COMPARE_SIZE := 100k
compare: install
	$(PY) bench/compare.py $(AGAINST) --size $(COMPARE_SIZE)

fixtures: install
	$(PY) fixtures/generate.py

# Rewrite tests/golden/demo/ from the demo run; review the diff before committing it.
golden: install
	RECONCILE_UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/test_golden.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
