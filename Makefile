# Linli — everything a person runs is here; `make help` lists it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LINLI_VAR_DIR ?= $(CURDIR)/var
TEST_GROUPS ?= 3

.DEFAULT_GOAL := help
.PHONY: help venv run stop test test-durations unit bench token lock clean contracts contracts-check contracts-release definitions broker-users broker-permissions test-chaos test-ops deploy-check

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Linli needs Python 3.11"' 
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  echo "installing python3-venv from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies

run: $(STAMP) ## start RabbitMQ (if needed), SecantusDB and the four services (SCALE=3: three of each); Ctrl-C stops
	$(if $(SCALE),LINLI_SCALE=$(SCALE) )$(BIN)/linli up

stop: $(STAMP) ## stop what `make run` started
	$(BIN)/linli down

test: $(STAMP) ## the whole suite: unit, integration (real RabbitMQ + SecantusDB), e2e — TEST_GROUPS pytest processes at once
	@deploy/local/rabbitmq.sh ensure test
	@set +e; $(BIN)/python -m tests.run_groups --groups $(TEST_GROUPS) -- --ignore=tests/chaos --ignore=tests/ops $(PYTEST_ARGS); \
	  status=$$?; deploy/local/rabbitmq.sh release test; exit $$status

test-durations: $(STAMP) ## run `make test`, recording each test's duration in tests/test_durations.json (how it splits the suite)
	@deploy/local/rabbitmq.sh ensure test
	@set +e; $(BIN)/python -m tests.run_groups --groups $(TEST_GROUPS) --store-durations -- --ignore=tests/chaos --ignore=tests/ops \
	  $(PYTEST_ARGS); status=$$?; deploy/local/rabbitmq.sh release test; exit $$status

test-chaos: $(STAMP) ## the slow fault tests: kill -9, database outage, broker restart, SIGTERM, two instances, outbox crashes
	@deploy/local/rabbitmq.sh ensure test
	@set +e; $(BIN)/pytest tests/chaos $(PYTEST_ARGS); status=$$?; deploy/local/rabbitmq.sh release test; exit $$status

test-ops: $(STAMP) ## metric catalogue, alert rules (promtool), a real Prometheus over the platform, manifests, e2e at SCALE=3
	@deploy/local/prometheus.sh ensure
	@deploy/local/rabbitmq.sh ensure test
	@set +e; $(BIN)/pytest tests/ops $(PYTEST_ARGS) && LINLI_SCALE=3 $(BIN)/pytest tests/e2e $(PYTEST_ARGS); \
	  status=$$?; deploy/local/rabbitmq.sh release test; exit $$status

unit: $(STAMP) ## only the unit tests (no broker, no database)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: $(STAMP) ## raw-broker baseline vs the skeleton's end-to-end rate, and their ratio
	@deploy/local/rabbitmq.sh ensure bench
	@set +e; $(BIN)/python -m tests.bench.skeleton $(BENCH_ARGS); status=$$?; deploy/local/rabbitmq.sh release bench; exit $$status

token: $(STAMP) ## print a token for every scope and every community (local use)
	@$(BIN)/linli token --communities '*' --scopes residents:read,residents:write,residents:pii,events:read,events:write,notifications:read,notifications:write,partners:admin,reports:read,reports:admin,cases:read,cases:write

contracts: $(STAMP) ## regenerate contracts/schemas/*.json and contracts/asyncapi.yaml from the contracts
	$(BIN)/python -m platform_tools.contract_docs write

contracts-check: $(STAMP) ## fail if a schema breaks the released set in contracts/released/
	$(BIN)/python -m platform_tools.contract_docs check

contracts-release: $(STAMP) ## record the current schemas as the released set (after a release)
	$(BIN)/python -m platform_tools.contract_docs release

definitions: $(STAMP) ## regenerate deploy/rabbitmq/ and deploy/k8s/rabbitmq/definitions.json (classic / quorum queues)
	$(BIN)/python -m platform_tools.broker_definitions

broker-permissions: $(STAMP) ## regenerate deploy/rabbitmq/permissions.json (each service's least permissions)
	$(BIN)/python -m platform_tools.broker_users write

broker-users: $(STAMP) ## create/update each service's RabbitMQ user in VHOST (passwords: LINLI_AMQP_PASSWORD_<SERVICE>)
	$(BIN)/python -m platform_tools.broker_users apply --vhost $(or $(VHOST),/)

deploy-check: $(STAMP) ## check deploy/ offline: YAML, Kubernetes schemas, kustomize, compose, Dockerfile
	$(BIN)/pytest tests/ops/test_manifests.py $(PYTEST_ARGS)

lock: $(STAMP) ## rewrite constraints.txt from the current venv
	@{ echo "# Every package the venv holds, pinned: \`make lock\` rewrites this from a working venv."; \
	   echo "# pyproject.toml pins the direct dependencies and says why where it isn't obvious."; \
	   $(BIN)/pip freeze --exclude-editable --disable-pip-version-check; } > constraints.txt

clean: ## remove the venv and var/ (all local data!)
	rm -rf $(VENV) var .pytest_cache
