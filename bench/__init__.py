"""Benchmarks: raftcron side by side with etcd and Redis on one machine, in one run.

``make bench`` (full) and ``make bench-quick`` run :mod:`bench.run`; see docs/benchmarks.md.
"""
