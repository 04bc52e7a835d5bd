# Two entry points, both from a fresh clone: `make quickstart` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
DEB_PACKAGES := dataset-fashion-mnist
# ManiSkill3 reads assets from here and never waits at a download prompt.
export MS_ASSET_DIR := $(CURDIR)/.cache/maniskill
export MS_SKIP_ASSET_DOWNLOAD_PROMPT := 1

.PHONY: setup quickstart test bench bench-envs clean

# The venv, the project (torch pinned to the CPU wheel), the Debian packages it reads data from, and a
# Vulkan driver SAPIEN can render with (Mesa >= 24.3 from bookworm-backports where no GPU driver is present).
$(VENV)/.installed: pyproject.toml
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	bash scripts/setup_vulkan.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Main job on the embedded default. Until the robot pipeline exists (issue #6) it is the quick ParityMNIST
# experiment: pretrain, fine-tune 5 methods over a small grid, write the forgetting report.
quickstart: setup
	@echo "== quickstart: the quick ParityMNIST experiment (the robot pipeline will replace it) =="
	$(VENV)/bin/vla-razor toy sweep --config configs/toy_quick.yaml

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/toy_runs_per_minute.py

bench-envs: setup
	$(PY) bench/envs_scripted.py --out docs/results/envs

clean:
	rm -rf runs
