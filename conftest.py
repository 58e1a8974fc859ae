"""Repository-level pytest configuration for running the benchmark from a checkout.

The plugin itself is registered through the ``pytest11`` entry point when the package is
installed (``pip install -e .``); nothing needs to be loaded here. What a checkout adds:
``kernelbench_tests/`` is the benchmark and ``tests/`` the project's own tests, and the
benchmark's results go to ``results/`` beside this file unless ``--hk-results`` says
otherwise.
"""

from __future__ import annotations

collect_ignore_glob = ["results/*", "benchmarks/*"]
