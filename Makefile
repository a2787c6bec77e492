# Two entry points (see README): `make demo` and `make test`. Each builds/updates its own venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STUBS  := .stubs/esp32
DEPS   := .deps/umqtt/simple.py

.PHONY: demo test lint typecheck pytest bench soak clean mosquitto flash

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# umqtt.simple 1.3.4 (PyPI sdist without setup.py): downloaded, sha256-checked, unpacked into
# .deps/ (git-ignored); tools/build.py compiles it into the image, firmware/mqtt.py finds it on
# CPython. Re-run when tools/deps.py changes the pin.
$(DEPS): tools/deps.py | $(VENV)/.base
	$(PY) -m tools.deps
	touch $@

# micropython-esp32-stubs installs top-level .pyi files (machine.pyi, ...): keep them in their own
# folder so they never shadow CPython modules; only the esp32 board is checked against them.
$(STUBS)/.stamp: $(VENV)/.dev
	$(PY) -m pip install -q --target $(STUBS) micropython-esp32-stubs
	touch $@

demo: $(VENV)/.dev $(DEPS)
	$(PY) -m host_sim demo

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check firmware hal host_sim tools tests

typecheck: $(STUBS)/.stamp
	MYPYPATH=$(STUBS) $(VENV)/bin/mypy --config-file tools/mypy-esp32.ini hal/boards/esp32.py

# The broker tests need Mosquitto, and CI must run them, never skip them: tools/mosquitto/
# install.sh installs it with apt-get when we are root (as in CI), else prints a note. It does
# nothing when mosquitto is already there.
mosquitto:
	@sh tools/mosquitto/install.sh

# The suite mostly waits (simulated sessions, time-outs), so it runs on 3 workers (pytest-xdist)
# even on 2 cores. The MicroPython image is built once first: the workers then only read it.
pytest: $(VENV)/.dev $(DEPS) mosquitto
	$(PY) -c "import os; from host_sim.runner import ROOT, build_for_micropython as b; \
	b(os.path.join(ROOT, 'build', 'mpy'))"
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest -n 3

test: lint typecheck pytest

bench: $(VENV)/.dev $(DEPS)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m tools.bench

# The power-cut campaign at length (issue 10; not part of `make test`): SOAK_CUTS cuts with one
# EVSE in runs of 100 (one flash directory fills with ~50 CDRs each) plus SOAK_CUTS2 with two,
# per interpreter; both interpreters run even if one fails. Reports:
# build/powercut-<interpreter>-<evses>.json. About 4 s per cut.
SOAK_SEED  ?= 1000
SOAK_CUTS  ?= 200
SOAK_CUTS2 ?= 50
soak: $(VENV)/.dev $(DEPS)
	@mkdir -p build; rc=0; for i in cpython micropython; do \
	  PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m tools.powercut --interpreter $$i \
	    --seed $(SOAK_SEED) --cuts $(SOAK_CUTS) --evses 1 --per-run 100 \
	    --report build/powercut-$$i-1.json || rc=1; \
	  PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m tools.powercut --interpreter $$i \
	    --seed $$(( $(SOAK_SEED) + 500 )) --cuts $(SOAK_CUTS2) --evses 2 \
	    --report build/powercut-$$i-2.json || rc=1; \
	done; \
	MPEVSE_CUTS=50 PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest -q -s \
	  tests/test_powercut_uplink.py || rc=1; exit $$rc

# Flash a charger (README "Deploy to a charger"): build, check the board, write, verify, reset.
flash: $(VENV)/.dev $(DEPS)
	@test -n "$(PORT)" || { echo "usage: make flash PORT=/dev/ttyUSB0 [CONFIG=FILE]" \
	  "[AUTHLIST=FILE] [CA=FILE] [DEPLOY_FLAGS=--dry-run]"; exit 2; }
	$(PY) -m tools.deploy --port $(PORT) $(if $(CONFIG),--config $(CONFIG)) \
	  $(if $(AUTHLIST),--authlist $(AUTHLIST)) $(if $(CA),--ca $(CA)) $(DEPLOY_FLAGS)

clean:
	rm -rf $(VENV) .stubs .pytest_cache .ruff_cache .mypy_cache
