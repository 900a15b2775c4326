# ros_torch_kin: every target does the set-up it needs (idempotently) on a fresh machine.
#   make demo    run the main job on the bundled 7-DOF arm and print results and timings
#   make test    the whole test suite
#   make bench   side-by-side benchmark against pytorch_kinematics 0.10 -> BENCHMARKS.md
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python
# keep DDS traffic on this machine (shared/ros-pip-recipe.md, pitfall 8)
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: env test test-library demo bench clean

env:
	VENV=$(VENV) tools/setup_env.sh

test: env test-library

test-library: env
	$(PYTHON) -m pytest test -q -p no:cacheprovider

demo: env
	$(PYTHON) -m ros_torch_kin.demo

bench: env
	VENV=$(VENV) tools/setup_env.sh bench
	$(PYTHON) bench/kinematics_benchmark.py --output BENCHMARKS.md

clean:
	rm -rf build install log ws .pytest_cache
