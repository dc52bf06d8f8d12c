"""The only unpickling in a raftcron process: pysyncobj's, restricted to plain data.

pysyncobj 0.3.17 pickles what it stores in the Raft log and unpickles it again when an
entry is applied, when a chunked entry arrives and when a journal is replayed. raftcron's
own data never is pickle (commands are a msgpack envelope inside the entry, snapshots are
msgpack, the peer wire is :mod:`raftcron.raft.wire`), but the log entries pysyncobj wraps
around them are ``pickle.dumps((method id, (command bytes,)), protocol=2)``, and journals
written by v0.1.0 hold exactly those: they must still load.

What this module guarantees:

* :func:`safe_loads` builds only ``None``, bools, ints, floats, strings, bytes, tuples,
  lists, dicts and sets. Protocol 2 pickles ``bytes`` as a call of ``_codecs.encode(text,
  "latin1")``; that one global is allowed, and only with that encoding. Every other global
  (``os.system``, ``builtins.eval``, any class) raises :class:`UnsafePickle` before it is
  looked up, so no code named in the data ever runs.
* :data:`MEMBERSHIP_GLOBALS` adds pysyncobj's ``TCPNode`` (a plain address holder), the
  only class pysyncobj pickles, for membership-change entries; only
  :func:`safe_loads_membership` accepts it.
* :func:`install` replaces ``pysyncobj.pickle.loads`` and ``load`` (which every pysyncobj
  module calls through; :mod:`raftcron.raft.seam` does it) with the restricted ones, so no
  pysyncobj code path can reach the unrestricted unpickler; it also drops pysyncobj's
  fallback to the pure-Python unpickler.
  Writing (``dumps``) is unchanged, so entries stay readable by v0.1.0's format.
"""

from __future__ import annotations

import codecs
import io
import pickle
from collections.abc import Callable
from typing import IO, Any, Final


class UnsafePickle(pickle.UnpicklingError):
    """The data names a global this unpickler refuses (nothing was imported or called)."""


def _latin1_encode(obj: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes: latin-1 text to bytes, nothing else."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickle(f"_codecs.encode with {encoding!r}: only latin-1 text is allowed")
    if errors != "strict":
        raise UnsafePickle(f"_codecs.encode with errors={errors!r}")
    return obj.encode("latin-1")


def _tcp_node_class() -> type:
    from raftcron.raft.seam import TCPNode  # (the seam imports this module)

    cls: type = TCPNode
    return cls


PLAIN_GLOBALS: Final[dict[tuple[str, str], Callable[[], Any]]] = {
    ("_codecs", "encode"): lambda: _latin1_encode,
}
MEMBERSHIP_GLOBALS: Final[dict[tuple[str, str], Callable[[], Any]]] = {
    **PLAIN_GLOBALS,
    ("pysyncobj.node", "TCPNode"): _tcp_node_class,
}


class _Restricted(pickle.Unpickler):
    def __init__(self, file: IO[bytes], allowed: dict[tuple[str, str], Callable[[], Any]]) -> None:
        super().__init__(file)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        make = self._allowed.get((module, name))
        if make is None:
            raise UnsafePickle(f"refused global {module}.{name}")
        return make()


def _loads(data: bytes | bytearray | memoryview | str, allowed: Any) -> Any:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return _Restricted(io.BytesIO(data), allowed).load()


def safe_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """``pickle.loads`` that builds plain data only (see the module docstring)."""
    return _loads(data, PLAIN_GLOBALS)


def safe_loads_membership(data: bytes | bytearray | memoryview) -> Any:
    """:func:`safe_loads` that also rebuilds pysyncobj ``TCPNode`` objects."""
    return _loads(data, MEMBERSHIP_GLOBALS)


def _safe_load(file: IO[bytes]) -> Any:
    return _Restricted(file, PLAIN_GLOBALS).load()


def install() -> None:
    """Route every unpickling pysyncobj does through :func:`safe_loads`. Idempotent."""
    from raftcron.raft import seam  # (the seam imports this module)

    seam.install_unpickler(safe_loads, _safe_load)


def installed() -> bool:
    from raftcron.raft import seam

    return seam.unpickler_installed(safe_loads, _safe_load)
