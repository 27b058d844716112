# Two commands do all the set-up: `make demo` (the end-to-end demo on the embedded
# default, no broker, no cloud) and `make test` (brokers, lint, types, the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp
S3_STAMP := $(VENV)/.s3-stamp
APP_REQUIREMENTS := examples/requirements.txt examples/requirements-s3.txt

# Where the broker suites find their brokers; scripts/brokers.sh starts them on these ports.
export TDM_TEST_RABBITMQ_STOMP_URL ?= stomp://guest:guest@127.0.0.1:61613/?dialect=rabbitmq
export TDM_TEST_ACTIVEMQ_STOMP_URL ?= stomp://127.0.0.1:61623/?dialect=activemq
export TDM_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672//
export TDM_TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: venv brokers browser lint asyncapi-validator test demo bench clean

# The official AsyncAPI parser that tests/test_asyncapi_validator.py runs on docs/asyncapi.yaml
# (Node.js); installed exactly as locked, without install scripts.
VALIDATOR := scripts/asyncapi
VALIDATOR_STAMP := $(VALIDATOR)/node_modules/.installed-stamp

# Everything: the library with its drivers, the reference apps' libraries, the test toolchain.
$(STAMP): pyproject.toml $(APP_REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' $(foreach r,$(APP_REQUIREMENTS),-r $(r))
	touch $(STAMP) $(DEMO_STAMP) $(S3_STAMP)

# Only what the demo runs: the library, its broker drivers (TDM_BROKER_URL may name any broker)
# and the reference apps' libraries; boto3 only for a demo on S3 (TDM_STORAGE=s3://...).
$(DEMO_STAMP): pyproject.toml examples/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[stomp,kombu]' -r examples/requirements.txt
	touch $(DEMO_STAMP)

$(S3_STAMP): examples/requirements-s3.txt $(DEMO_STAMP)
	$(BIN)/python -m pip install -q -r examples/requirements-s3.txt
	touch $(S3_STAMP)

venv: $(STAMP)

brokers:
	bash scripts/brokers.sh up

# Debian's chromium for the miner's page test (tests/e2e/test_miner_page.py); apt-installed if missing.
browser:
	bash scripts/browser.sh

lint: venv
	$(BIN)/ruff check tdm_messaging tests examples bench
	$(BIN)/ruff format --check tdm_messaging tests examples bench
	$(BIN)/mypy --strict tdm_messaging

$(VALIDATOR_STAMP): $(VALIDATOR)/package-lock.json
	cd $(VALIDATOR) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

asyncapi-validator: $(VALIDATOR_STAMP)

test: venv brokers browser lint asyncapi-validator
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(DEMO_STAMP) $(if $(filter s3://%,$(TDM_STORAGE)),$(S3_STAMP))
	$(BIN)/python -m examples.demo

bench: venv brokers
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .work .pytest_cache .mypy_cache .ruff_cache $(VALIDATOR)/node_modules
