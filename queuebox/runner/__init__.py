"""Execution: the worker that claims and runs jobs, and the processes that host workers."""
