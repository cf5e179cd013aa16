"""Benchmarks: measured, not assumed. Run with ``make bench``."""
