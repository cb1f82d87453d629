"""Benchmarks and compatibility checks; run each as ``python bench/<script>.py --help``."""
