# The verbs. Two of them matter to a newcomer: `make demo` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check -q
OUT     ?= out
# The suite runs in worker processes (pytest-xdist); tests/conftest.py keeps each shared real
# system on one worker. Most of the time is spent waiting on services, not on the CPU.
WORKERS ?= 3

.PHONY: demo test lint generate bench venv install setup unit asset rpm deb st2-pack zabbix packages clean

# A venv with the bundle installed the way users get it (not editable: the tests
# and benchmarks measure the real import paths).
$(VENV)/.installed: setup.py $(shell find autoremedy checks handlers remediations -name '*.py' 2>/dev/null)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install '.[test]'
	touch $@

venv install: $(VENV)/.installed

## The main job: detect -> forward -> fall back, locally, nothing external needed.
demo: $(VENV)/.installed
	$(PY) scripts/demo.py

## The suite: lint first, then installs and starts what the tests need, then runs everything.
test: lint $(VENV)/.installed
	scripts/ci-setup.sh
	CI=$${CI:-true} $(VENV)/bin/pytest -q -n $(WORKERS) --dist loadgroup tests

## ruff over the whole tree (rules: ruff.toml).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

## Rewrite every generated file from the classes' manifests (checks/<class>.py MANIFEST):
## Sensu checks, Zabbix templates and agent parameters, the StackStorm pack's class rules.
## Needs only PyYAML: GENPY=python3 works without the venv.
GENPY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
generate:
	$(GENPY) packaging/sensu/definitions.py
	$(GENPY) packaging/zabbix/template.py > packaging/zabbix/autoremedy_template.yaml.new
	mv packaging/zabbix/autoremedy_template.yaml.new packaging/zabbix/autoremedy_template.yaml
	$(GENPY) packaging/zabbix/agent.py
	$(GENPY) packaging/tools/pack_rules.py

## Unit tests only (no services).
unit: $(VENV)/.installed
	$(VENV)/bin/pytest -q tests -m "not integration"

## Benchmarks: ratios side by side, printed as the README's table.
bench: $(VENV)/.installed
	scripts/ci-setup.sh
	$(PY) bench/run.py

## Packages and integrations (see README): each target leaves its artefacts in $(OUT)/.
asset: $(VENV)/.installed
	scripts/build-asset.sh $(OUT)

rpm: $(VENV)/.installed
	scripts/build-rpm.sh $(OUT)

deb: $(VENV)/.installed
	scripts/build-deb.sh $(OUT)

st2-pack:
	scripts/build-st2-pack.sh $(OUT)

zabbix: $(VENV)/.installed
	scripts/build-zabbix.sh $(OUT)

packages: asset rpm deb st2-pack zabbix

clean:
	rm -rf $(VENV) $(OUT) build dist *.egg-info .pytest_cache
