"""Fakes for tests that drive one pysyncobj replica through the seam by hand
(tests/unit/test_seam_raft.py, tests/unit/test_prevote.py)."""

from __future__ import annotations

from typing import Any

from raftcron.raft import seam


class Recorder(seam.Transport):  # type: ignore[misc]
    """Sends nothing: records what the replica sends; ``deliver`` hands it a message."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.nodes = {n.id: n for n in otherNodes}

    def send(self, node: Any, message: Any) -> bool:
        self.sent.append((node.id, message))
        return True

    def deliver(self, src: str, message: dict[str, Any]) -> None:
        self._onMessageReceived(self.nodes[src], message)

    def replies(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.sent if m["type"] == kind]


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now
