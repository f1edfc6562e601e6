"""se3mol's benchmark suite: one folder per topic, each script's results in ``results/`` beside it.

Run a script as a module from the repository root, e.g. ``python -m benchmarks.speed.throughput --help``;
``benchmarks/README.md`` is the index. Every script writes through ``benchmarks._results.write_result``.
"""
