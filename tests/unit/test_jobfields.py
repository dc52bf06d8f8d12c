"""The job field table and the command table are consistent with the dataclasses they
describe, and their wire rules keep old encodings stable."""

from __future__ import annotations

import dataclasses

from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.jobfields import FEATURE_LEVEL, JOB_FIELDS, JOB_KEYS, WIRE_FIELDS
from raftcron.core.model import JobSpec


def test_one_row_per_jobspec_field_with_its_default() -> None:
    fields = {f.name: f for f in dataclasses.fields(JobSpec)}
    assert [r.attr for r in JOB_FIELDS if r.attr not in fields] == []
    assert sorted(fields) == sorted(r.attr for r in JOB_FIELDS)
    for row in JOB_FIELDS:
        default = fields[row.attr].default
        if default is not dataclasses.MISSING:
            assert row.default == default, row.attr
        else:
            assert row.wire_always, row.attr  # a required field is always on the wire


def test_wire_positions_are_unique_and_the_first_release_comes_first() -> None:
    assert [f.wire_rank for f in WIRE_FIELDS] == list(range(len(JOB_FIELDS)))
    always = [f.wire_rank for f in WIRE_FIELDS if f.wire_always]
    assert always == list(range(len(always)))  # (written first, in this order, always)
    assert all(f.since == 0 for f in JOB_FIELDS if f.wire_always)


def test_feature_level_is_the_newest_key() -> None:
    assert max(f.since for f in JOB_FIELDS) == FEATURE_LEVEL
    assert max(k.since for k in c.KINDS) <= features.FEATURE_LEVEL
    # a key of a later level is never written at its default, so old jobs keep their bytes
    assert not [f.attr for f in JOB_FIELDS if f.since and f.wire_always]


def test_table_keys_are_unique() -> None:
    assert len(set(JOB_KEYS)) == len(JOB_KEYS)
    assert len({f.api for f in JOB_FIELDS if f.api}) == len([f for f in JOB_FIELDS if f.api])


def test_every_command_class_has_one_kind_naming_all_its_fields() -> None:
    classes = set(c.Command.__args__)  # type: ignore[attr-defined]
    assert {k.cls for k in c.KINDS} == classes and len(c.KINDS) == len(classes)
    assert len({k.tag for k in c.KINDS}) == len(c.KINDS)
    for kind in c.KINDS:
        names = [f.name for f in dataclasses.fields(kind.cls) if f.name != "at_ms"]
        assert sorted(a.attr for a in kind.args) == sorted(names), kind.tag
        assert len({a.wire for a in kind.args}) == len(kind.args), kind.tag
        for arg in kind.args:
            assert not (arg.omit and not arg.optional), (kind.tag, arg.attr)  # left out: optional
