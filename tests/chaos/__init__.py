"""Fault-injection tests: real worker processes killed, paused and cut off (``-m chaos``)."""
