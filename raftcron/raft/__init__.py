"""The Raft adapter: the only package that imports pysyncobj (durable journal, snapshots, node)."""
