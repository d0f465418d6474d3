"""queuebox's benchmark suite: ``python -m benchmarks`` (see docs/benchmarks.md).

Every module here except the store and peer runners uses only the standard library, so a
peer that lives in its own virtual environment (``benchmarks/.venv-peers``) can run the
same harness.
"""
