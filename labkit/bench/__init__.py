"""Benchmarks behind `labkit bench ...`: each returns a dict of figures (never asserts a time)."""
