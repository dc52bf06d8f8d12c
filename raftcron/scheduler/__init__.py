"""Leader-only work: the cron scheduler and the lease monitor."""
