"""Helpers that the tests and the benchmarks share: fault injection and fast CLI launches;
and, between test modules, the tiny runs' faces and the textbook DCGAN step.

All import them as `tests.support.NAME`, from the repository root.
"""
