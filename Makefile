# The two commands of the README. Each installs what it needs first; a torch that is
# already installed (a CUDA or ROCm build) is kept, otherwise the CPU build is installed.
PYTHON ?= python3

.PHONY: setup report test test-slow lint

setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[test]'

report: setup
	$(PYTHON) -m pytest kernelbench_tests --html=report.html --self-contained-html

# The suite on up to 4 xdist workers (one file per worker: a module's shared fixtures run
# once); the five slowest end-to-end runs are marked slow and run by CI (test-slow).
TEST_ARGS = -n auto --maxprocesses 4 --dist loadfile

test: setup
	$(PYTHON) -m pytest tests $(TEST_ARGS) -m "not slow"

test-slow: setup
	$(PYTHON) -m pytest tests $(TEST_ARGS) -m slow

lint:
	$(PYTHON) -m ruff check . && $(PYTHON) -m ruff format --check .
