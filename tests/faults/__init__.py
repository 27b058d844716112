"""Fault-injection tests: what survives crashes, restarts, dead connections, poison and duplicate messages."""
