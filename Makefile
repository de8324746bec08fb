# ketch: `make demo` sets everything up and runs a container; `make test` runs the whole test suite.
# Both work on a fresh Debian 12 machine as root and install what they need.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT_PACKAGES := python3-venv python3-dev gcc make busybox-static libseccomp2 iproute2 procps util-linux \
                runc crun docker.io podman conmon tini uidmap iptables nftables skopeo \
                docker-registry umoci openssl
DEMO_DIR ?= /tmp/ketch-demo

.PHONY: demo test unit integration interop lint bench system-packages venv clean

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: system-packages $(STAMP)
	@# Editable installs leave src/ uncompiled, and PYTHONDONTWRITEBYTECODE may be set: compile now so no
	@# command pays for compiling on every call; then replace pip's launchers with lean ones.
	@$(PY) -m compileall -q src
	@$(PY) scripts/install_launchers.py

demo: venv
	@# The ketch CLI starts ketchd itself when none answers on /run/ketch/ketch.sock; the base image is made
	@# here from busybox-static and imported, so nothing comes from the internet.
	@mkdir -p $(DEMO_DIR)
	@$(VENV_ABS)/bin/ketch image inspect busybox:local >/dev/null 2>&1 || { \
	  $(PY) scripts/base_image.py $(DEMO_DIR)/busybox.tar && $(VENV_ABS)/bin/ketch import $(DEMO_DIR)/busybox.tar busybox:local; }
	$(VENV_ABS)/bin/ketch run --rm busybox:local sh -c 'echo "hello from a ketch container: pid $$$$, host $$(hostname)"; id; ls /'

VENV_ABS := $(abspath $(VENV))

test: lint
	$(PY) -m pytest tests -q

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv
	$(PY) -m pytest tests/integration -q

interop: venv
	$(PY) -m pytest tests/interop -q

lint: venv
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: venv
	$(PY) bench/runtime_start.py

clean:
	rm -rf $(VENV) build src/*.egg-info
