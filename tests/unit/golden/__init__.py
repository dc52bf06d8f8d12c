"""Golden fixtures: what the code computed for a fixed set of inputs before the job field
table (issue 14 item 1) replaced the hand-written parser, codec and views.

``cases.py`` holds the inputs and the functions that compute the outputs; ``python -m
tests.unit.golden`` writes them to the ``*.json`` files here; ``test_golden.py`` recomputes
them and fails on any difference. The wire bytes are the contract with running clusters (a
rolling upgrade mixes versions, snapshots outlive releases): never regenerate them to make
a refactor pass; only a deliberate, additive change (a new key) may add entries.
"""
