# person_search: the two commands. Both set up everything they need on a fresh machine
# (tools/setup_env.sh: venv with pinned deps, ROS wheel fixes, colcon build).
.PHONY: demo test setup bench clean

RUN := tools/env.sh
PY := python

setup:
	bash tools/setup_env.sh

demo: setup
	$(RUN) $(PY) -m person_search demo $(DEMO_ARGS)

test: setup
	$(RUN) $(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(RUN) $(PY) -m benchmarks.bench_gallery --quick
	$(RUN) $(PY) -m benchmarks.bench_embedder

clean:
	rm -rf build install log
