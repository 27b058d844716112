# Two commands do all the set-up: `make demo` (the end-to-end demo on the embedded
# default, no broker, no cloud) and `make test` (brokers, lint, types, the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Where the broker suites find their brokers; scripts/brokers.sh starts them on these ports.
export TDM_TEST_RABBITMQ_STOMP_URL ?= stomp://guest:guest@127.0.0.1:61613/?dialect=rabbitmq
export TDM_TEST_ACTIVEMQ_STOMP_URL ?= stomp://127.0.0.1:61623/?dialect=activemq
export TDM_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672//
export TDM_TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: venv brokers lint asyncapi-validator test demo bench clean

# The official AsyncAPI parser that tests/test_asyncapi_validator.py runs on docs/asyncapi.yaml
# (Node.js); installed exactly as locked, without install scripts.
VALIDATOR := scripts/asyncapi
VALIDATOR_STAMP := $(VALIDATOR)/node_modules/.installed-stamp

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

brokers:
	bash scripts/brokers.sh up

lint: venv
	$(BIN)/ruff check tdm_messaging tests examples bench
	$(BIN)/ruff format --check tdm_messaging tests examples bench
	$(BIN)/mypy --strict tdm_messaging

$(VALIDATOR_STAMP): $(VALIDATOR)/package-lock.json
	cd $(VALIDATOR) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

asyncapi-validator: $(VALIDATOR_STAMP)

test: venv brokers lint asyncapi-validator
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/python -m examples.demo

bench: venv brokers
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .work .pytest_cache .mypy_cache .ruff_cache $(VALIDATOR)/node_modules
