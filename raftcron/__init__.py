"""raftcron: a highly available cron on its own Raft cluster."""
