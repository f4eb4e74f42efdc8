"""Benchmarks of cdrsync (not part of the test run): `python -m tests.benchmarks --help`."""
