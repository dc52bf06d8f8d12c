"""Importers: the schedules people have today (a crontab, Dkron's jobs) as ``[[jobs]]``
tables that ``raftcron jobs apply`` and the cluster file accept.

Every importer produces job mappings (the keys of a ``[[jobs]]`` table) and checks each one
with :func:`raftcron.config.job_spec_from_mapping`, the one definition of a valid job, so
what it writes is exactly what the cluster accepts. What could not be imported, and what
behaves differently in raftcron, is said in a :class:`~raftcron.importers.common.Report`.

Pure: the importers read no clock and no file; the command line (:mod:`.cli`) reads the
input and the host's time zone and hands them in.
"""
