# ros_torch_kin: every target does the set-up it needs (idempotently) on a fresh machine.
#   make demo    build, start the node on the bundled 7-DOF arm, call its services, print results
#   make test    build and run the whole suite (library + integration tests against the real node)
#   make bench   side-by-side benchmarks -> BENCHMARKS.md
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= $(CURDIR)/.venv
WS := $(CURDIR)/ws
ROS_ENV := source $(CURDIR)/tools/ros_env.sh
# keep DDS traffic on this machine (shared/ros-pip-recipe.md, pitfall 8)
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
COLCON_QUIET := --event-handlers console_cohesion- status- summary+

.PHONY: env build test demo bench test-jazzy clean

env:
	VENV=$(VENV) tools/setup_env.sh

# A colcon workspace next to the sources: ws/src/ros_torch_kin -> this checkout.
build: env
	mkdir -p $(WS)/src && ln -sfn $(CURDIR) $(WS)/src/ros_torch_kin
	$(ROS_ENV) && cd $(WS) && colcon build $(COLCON_QUIET)

test: build
	$(ROS_ENV) && cd $(WS) && colcon test --event-handlers console_direct+ --return-code-on-test-failure \
	  && colcon test-result --verbose

demo: build
	$(ROS_ENV) && python -P -m ros_torch_kin.ros.demo

# Each script rewrites only its own section of BENCHMARKS.md; run one alone to refresh it.
bench: build
	VENV=$(VENV) tools/setup_env.sh bench
	$(ROS_ENV) && python bench/kinematics_benchmark.py --output BENCHMARKS.md --plot docs/benchmark_fk.png
	$(ROS_ENV) && python bench/service_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/trajectory_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/time_parameterization_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/ik_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/collision_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/motion_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/tight_model_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/self_pair_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/mbm_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/grazing_goal_benchmark.py --limit 20 --output BENCHMARKS.md
	$(ROS_ENV) && python bench/point_world_benchmark.py --output BENCHMARKS.md
	$(ROS_ENV) && python bench/load_benchmark.py --output BENCHMARKS.md

# The same build and suite against ROS 2 Jazzy wheels, in .venv-jazzy and ws-jazzy (not run by CI).
JAZZY := export RTK_VENV=$(CURDIR)/.venv-jazzy RTK_WS=$(CURDIR)/ws-jazzy
test-jazzy:
	VENV=$(CURDIR)/.venv-jazzy ROS_GROUP=ros-jazzy CONSTRAINTS=$(CURDIR)/requirements/constraints-jazzy.txt tools/setup_env.sh
	mkdir -p ws-jazzy/src && ln -sfn $(CURDIR) ws-jazzy/src/ros_torch_kin
	$(JAZZY) && $(ROS_ENV) && cd ws-jazzy && colcon build $(COLCON_QUIET)
	$(JAZZY) && $(ROS_ENV) && cd ws-jazzy && colcon test --event-handlers console_direct+ \
	  --return-code-on-test-failure && colcon test-result --verbose

clean:
	rm -rf $(WS) ws-jazzy .pytest_cache
