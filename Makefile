# The two commands of the README, on a machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: run test test-kafka kafka lint typecheck unit integration e2e bench lock clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

run: $(STAMP)  ## the whole hub on embedded PostgreSQL and broker
	$(BIN)/maillage dev

test: lint typecheck  ## everything CI runs
	$(BIN)/pytest

# The integration and end-to-end tests again on Apache Kafka (KRaft), the production broker: needs Java 17+ and,
# once, Maven to fetch its jars (deploy/kafka/pom.xml). Without them the tests skip, unless MAILLAGE_REQUIRE_KAFKA=1.
test-kafka: $(STAMP)
	MAILLAGE_TEST_BROKER=kafka $(BIN)/pytest tests/integration tests/e2e

kafka:  ## fetch Apache Kafka's jars into .maillage/kafka/lib
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the one direction of imports: contracts of pyproject.toml

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

bench: $(STAMP)
	$(BIN)/python -m bench.outbox
	$(BIN)/python -m bench.startup

lock:  ## refresh constraints.txt from the current environment
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check > constraints.txt

clean:
	rm -rf .maillage .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
