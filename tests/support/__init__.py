"""Helpers that the tests and the benchmarks share: fault injection and fast CLI launches.

Both import them as `tests.support.NAME`, from the repository root.
"""
