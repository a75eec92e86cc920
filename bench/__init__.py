"""Benchmarks: run by hand (`make bench`) or in CI; they print figures and
assert nothing about speed."""
