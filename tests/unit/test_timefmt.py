"""raftcron/timefmt.py: the one RFC 3339 formatter (issue 14 item 3)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from raftcron.timefmt import rfc3339


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_800_000_000_000, "2027-01-15T08:00:00Z"),
        (1_800_000_000_345, "2027-01-15T08:00:00.345Z"),
        (1_800_000_000_005, "2027-01-15T08:00:00.005Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-54_000_000_000_000, "0258-10-23T00:00:00Z"),  # four digits, unlike strftime("%Y")
    ],
)
def test_rfc3339(ms: int, text: str) -> None:
    assert rfc3339(ms) == text
    back = datetime.fromisoformat(text)
    assert back.tzinfo is not None
    assert round(back.astimezone(UTC).timestamp() * 1000) == ms
