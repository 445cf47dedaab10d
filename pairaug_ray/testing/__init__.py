"""Test doubles that speak real protocols on loopback (used by the tests and the benchmarks)."""
