"""Benchmark suite for asgiws: see benchmarks/README.md."""
