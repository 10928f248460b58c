"""Benchmarks: one script per figure, each printing a table. `make bench` runs them all."""
