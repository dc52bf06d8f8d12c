"""Runs the fires granted to this node: lease renewal, watchdog, fenced completion."""
