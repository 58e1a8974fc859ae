# The two commands of the README. Each installs what it needs first; a torch that is
# already installed (a CUDA or ROCm build) is kept, otherwise the CPU build is installed.
PYTHON ?= python3

.PHONY: setup report test lint

setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[test]'

report: setup
	$(PYTHON) -m pytest kernelbench_tests --html=report.html --self-contained-html

test: setup
	$(PYTHON) -m pytest tests

lint:
	$(PYTHON) -m ruff check . && $(PYTHON) -m ruff format --check .
