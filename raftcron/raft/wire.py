"""The Raft port: how replicas talk, and what anyone else can do to it.

pysyncobj 0.3.17 reads a 4-byte length and then waits for that many bytes, growing its
buffer with ``bytes +=``; it has no maximum, keeps a silent connection for
``connectionTimeout`` and checks that timeout only when the connection has an event; it
answers utility commands (status, add, remove, set_version, transfer) and read-only
connections to anyone holding the secret; and it ``pickle.loads`` every frame that
decrypts. This module replaces its connection, server and handshake (the
:class:`GuardedTransport` of a ``SyncObj``; the Raft logic above is pysyncobj's).

What it guarantees:

* **Frames.** ``<u32 length><Fernet token>``. A connection that has not yet sent a frame
  that decrypts may announce at most :data:`PREAUTH_MAX_FRAME` bytes (its first frame is a
  32-byte session key); after that :data:`MAX_FRAME`. A larger length is refused as soon as
  its 4 bytes arrive, before anything is buffered. The receive buffer is a ``bytearray``
  consumed from the front (linear in the bytes received), the send buffer too.
* **Strangers.** An accepted connection must complete the handshake (a frame that
  decrypts, then the name of a configured member) within :data:`HANDSHAKE_DEADLINE_S`,
  checked on every tick whether or not the connection sends anything. At most
  :data:`MAX_UNAUTHENTICATED` connections (:data:`MAX_UNAUTHENTICATED_PER_SOURCE` per source
  address) may wait for their first authenticated frame; a new one beyond that closes the
  oldest waiting connection of the busiest source. Every refused or closed connection is
  logged with the peer and the reason, at most :data:`RefusalLog.BURST` lines per
  :data:`RefusalLog.WINDOW_S`, then one summary line with counts by reason and source.
  Established peer connections keep pysyncobj's ``connectionTimeout``.
* **No pickle.** The plaintext of a frame is one flag byte (0: msgpack follows; 1: zlib of
  msgpack, for bodies over :data:`COMPRESS_OVER` bytes) and a msgpack array
  ``[echoed session key or nil, kind, fields...]``: one fixed layout per pysyncobj message
  type (:func:`encode_message`), decoded with every field's type checked
  (:func:`decode_message`); anything else is refused. pysyncobj's utility messages and
  ``readonly`` have no encoding and are refused by the handshake too. A peer that still
  speaks the pickle wire (raftcron 0.1, pysyncobj's ``syncobj_admin``) is refused with a
  log line that says so: the upgrade is a full stop (CHANGELOG.md).
* **Secrets.** A :class:`Keyring` derives one Fernet key per accepted secret once, at
  start (PBKDF2, pysyncobj's parameters). A frame is accepted if it decrypts with any of
  them; a connection answers with the key its peer used, and an outgoing connection that
  the peer closes before accepting our current secret retries with the next one, so a
  rolling secret rotation never splits the cluster (docs/operations.md, "Rotating the
  cluster secret").
* **Clusters.** The member message names the id of the cluster the dialling member's
  state belongs to (``State.cluster_id``, sent only when it has one); a member refuses a
  peer whose id differs from its own (code ``cluster_id``, logged): a cluster restored
  from a backup has a new id and never talks to the old one (docs/operations.md, "Back up
  and restore").
* pysyncobj's replay protection is kept: each connection's frames carry the session key
  the receiver chose, and Fernet timestamps must not go backwards on a connection.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hmac
import logging
import socket
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack
from cryptography.fernet import Fernet, InvalidToken

from raftcron.clock import monotonic
from raftcron.raft.seam import (
    CONNECTION_STATE,
    POLL_EVENT_TYPE,
    SESSION_KEY_BYTES,
    TransportBase,
    addr_family,
    getEncryptor,
)

logger = logging.getLogger(__name__)

PREAUTH_MAX_FRAME: Final = 4096
"""The largest frame a connection may announce before one of its frames decrypted (the
first frame holds a 32-byte session key: about 150 bytes)."""

MAX_FRAME: Final = 64 * 2**20
"""The largest frame (and the largest decompressed body) a member may send. Entries of
``appendEntriesBatchSizeBytes`` (64 KiB) or more travel in 64 KiB chunks and snapshots in
64 KiB pieces; only a command forwarded whole to the leader can be larger (an API write,
bounded by the API's 1 MiB body; a leader's own proposal forwarded after it lost the lead).
Measured with ``python -m bench.wire_frames`` (a 100,000-job config sync, a 20,000-fire
plan proposed on a follower, a snapshot of 12-19 MB installed on an empty follower): the
largest frame was 68,644 bytes (the plan, 600,040 bytes before compression), chunks and
snapshot pieces at most about 7,000 bytes."""

HANDSHAKE_DEADLINE_S: Final = 2.0
MAX_UNAUTHENTICATED: Final = 128
MAX_UNAUTHENTICATED_PER_SOURCE: Final = 32
ACCEPTS_PER_EVENT: Final = 16
LISTEN_BACKLOG: Final = 128
COMPRESS_OVER: Final = 4096
LARGE_FRAME_LOG: Final = 2**20  # frames from this size on are logged (each new power of 2)

# How long a peer connection may keep data that the peer's kernel never acknowledged
# before Linux aborts it (TCP_USER_TIMEOUT). Without it a partition that drops packets
# leaves the connection in retransmission backoff: after the network heals, nothing flows
# until the next retransmission, seconds later and longer the longer the partition lasted
# (the chaos suite saw a node stay out of the cluster 16 s after a 7.5 s partition
# healed). Aborted, pysyncobj reconnects every connectionRetryTime, and a connect attempt
# is bounded the same way. A peer process that is merely frozen (SIGSTOP) or slow is not
# affected: its kernel still acknowledges what arrives.
PEER_USER_TIMEOUT_MS: Final = 2000

_PREFIX: Final = struct.Struct("<I")
_PLAIN: Final = 0
_ZLIB: Final = 1
_ZLIB_HEADER: Final = 0x78  # the first byte of every frame of the pickle wire

# Message kinds: the second element of every frame body.
K_SESSION_KEY: Final = 0
K_MEMBER: Final = 1
K_REQUEST_VOTE: Final = 2
K_RESPONSE_VOTE: Final = 3
K_TIMEOUT_NOW: Final = 4
K_APPEND: Final = 5
K_CHUNK: Final = 6
K_SNAPSHOT: Final = 7
K_APPLY: Final = 8
K_APPLY_RESPONSE: Final = 9
K_NEXT_INDEX: Final = 10
# Pre-vote (feature level 3; docs/design.md, "Elections: pre-vote and stickiness"). A
# member below level 3 refuses these kinds (it closes the connection: a malformed frame),
# so a member sends them only while every member advertises level 3 or later.
K_PRE_VOTE: Final = 11
K_PRE_VOTE_RESPONSE: Final = 12
# Kinds above this one are from a later release: dropped (and logged), not refused.
K_LAST_KNOWN: Final = K_PRE_VOTE_RESPONSE

_TRANSMISSIONS: Final = ("start", "process", "finish")
_TRANSMISSION_CODE: Final = {name: i for i, name in enumerate(_TRANSMISSIONS)}
_MAX_INT: Final = 2**63 - 1


class WireError(Exception):
    """A frame or message this node refuses; ``code`` names the rule, the text says more."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Messages


# The AppendEntries reply (``next_node_idx``) carries the term it was sent in, a fourth
# field (raftcron.raft.seam: a leader ignores replies of another term). Every build reads
# both forms; a build before this field read only three, so turning this off is what lets
# such a build and this one run in one cluster (a leader then counts replies as before).
ACK_TERM_ON_WIRE: Final = True


class MemberHello(str):
    """The handshake's member message: the dialling member's raft address, and the id of
    the cluster its state belongs to (``State.cluster_id``; "" for a cluster without one,
    then sent as before ids existed: ``[K_MEMBER, address]``)."""

    cluster_id: str

    def __new__(cls, address: str, cluster_id: str = "") -> MemberHello:
        hello = super().__new__(cls, address)
        hello.cluster_id = cluster_id
        return hello


def encode_message(message: Any) -> list[Any]:
    """The wire form of a message pysyncobj sends: ``[kind, fields...]``."""
    if isinstance(message, bytes):
        return [K_SESSION_KEY, message]
    if isinstance(message, MemberHello) and message.cluster_id:
        return [K_MEMBER, str(message), message.cluster_id]
    if isinstance(message, str):
        return [K_MEMBER, str(message)]
    if not isinstance(message, dict):
        raise WireError("encode", f"no wire form for a {type(message).__name__}")
    t = message.get("type")
    if t == "append_entries":
        term, commit = message["term"], message["commit_index"]
        if "serialized" in message:
            return [K_SNAPSHOT, term, commit, message["serialized"]]
        prev_idx, prev_term = message["prevLogIdx"], message["prevLogTerm"]
        if "transmission" in message:
            code = _TRANSMISSION_CODE[message["transmission"]]
            return [K_CHUNK, term, commit, prev_idx, prev_term, code, message["data"]]
        return [K_APPEND, term, commit, prev_idx, prev_term, message["entries"]]
    if t == "next_node_idx":
        ack = [K_NEXT_INDEX, message["next_node_idx"], message["reset"], message["success"]]
        if ACK_TERM_ON_WIRE and "term" in message:
            ack.append(message["term"])
        return ack
    if t == "apply_command":
        return [K_APPLY, message["command"], message.get("request_id")]
    if t == "apply_command_response":
        return [
            K_APPLY_RESPONSE,
            message["request_id"],
            message.get("error"),
            message.get("log_idx"),
            message.get("log_term"),
        ]
    if t == "request_vote":
        vote = [
            K_REQUEST_VOTE,
            message["term"],
            message["last_log_index"],
            message["last_log_term"],
        ]
        if message.get("transfer"):  # (a fourth field only then: level 3; seam.py)
            vote.append(True)
        return vote
    if t == "pre_vote":
        return [
            K_PRE_VOTE,
            message["term"],
            message["last_log_index"],
            message["last_log_term"],
        ]
    if t == "pre_vote_response":
        return [K_PRE_VOTE_RESPONSE, message["term"], message["granted"]]
    if t == "response_vote":
        return [K_RESPONSE_VOTE, message["term"]]
    if t == "timeout_now":
        return [K_TIMEOUT_NOW, message["term"]]
    raise WireError("encode", f"no wire form for message type {t!r}")


def _bad(what: str) -> WireError:
    return WireError("malformed", f"malformed message: {what}")


def _int(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= _MAX_INT:
        raise _bad(f"{what} is not a non-negative integer")
    return v


def _opt_int(v: Any, what: str) -> int | None:
    return None if v is None else _int(v, what)


def _bool(v: Any, what: str) -> bool:
    if type(v) is not bool:
        raise _bad(f"{what} is not a boolean")
    return v


def _bytes(v: Any, what: str) -> bytes:
    if type(v) is not bytes:
        raise _bad(f"{what} is not binary")
    return v


def _fields(body: list[Any], n: int, kind: str) -> list[Any]:
    if len(body) != n + 1:
        raise _bad(f"{kind} with {len(body) - 1} fields (expected {n})")
    return body[1:]


def _entries(v: Any) -> list[tuple[bytes, int, int]]:
    if type(v) is not list:
        raise _bad("entries is not a list")
    out = []
    for e in v:
        if type(e) is not list or len(e) != 3:
            raise _bad("an entry is not [command, index, term]")
        out.append((_bytes(e[0], "entry command"), _int(e[1], "entry index"), _int(e[2], "term")))
    return out


def decode_message(body: list[Any]) -> Any:
    """The pysyncobj message of a decoded ``[kind, fields...]``; :class:`WireError` unless
    every field has the type pysyncobj's sender gives it."""
    if not body:
        raise _bad("empty body")
    kind = body[0]
    if kind == K_APPEND:
        term, commit, prev_idx, prev_term, entries = _fields(body, 5, "append_entries")
        return {
            "type": "append_entries",
            "term": _int(term, "term"),
            "commit_index": _int(commit, "commit_index"),
            "entries": _entries(entries),
            "prevLogIdx": _opt_int(prev_idx, "prevLogIdx"),
            "prevLogTerm": _opt_int(prev_term, "prevLogTerm"),
        }
    if kind == K_NEXT_INDEX:
        # [idx, reset, success] from a build before acks carried their term, else + [term]
        idx, reset, success, *term = _fields(body, 4 if len(body) == 5 else 3, "next_node_idx")
        ack: dict[str, Any] = {
            "type": "next_node_idx",
            "next_node_idx": _int(idx, "next_node_idx"),
            "reset": _bool(reset, "reset"),
            "success": _bool(success, "success"),
        }
        if term:
            ack["term"] = _int(term[0], "term")
        return ack
    if kind == K_APPLY:
        command, request_id = _fields(body, 2, "apply_command")
        msg: dict[str, Any] = {"type": "apply_command", "command": _bytes(command, "command")}
        if request_id is not None:
            msg["request_id"] = _int(request_id, "request_id")
        return msg
    if kind == K_APPLY_RESPONSE:
        request_id, error, log_idx, log_term = _fields(body, 4, "apply_command_response")
        msg = {"type": "apply_command_response", "request_id": _int(request_id, "request_id")}
        if error is not None:
            msg["error"] = _int(error, "error")
        else:
            msg["log_idx"] = _int(log_idx, "log_idx")
            msg["log_term"] = _int(log_term, "log_term")
        return msg
    if kind == K_CHUNK:
        term, commit, prev_idx, prev_term, code, data = _fields(body, 6, "chunk")
        if type(code) is not int or not 0 <= code < len(_TRANSMISSIONS):
            raise _bad("unknown transmission")
        return {
            "type": "append_entries",
            "transmission": _TRANSMISSIONS[code],
            "data": _bytes(data, "data"),
            "term": _int(term, "term"),
            "commit_index": _int(commit, "commit_index"),
            "prevLogIdx": _opt_int(prev_idx, "prevLogIdx"),
            "prevLogTerm": _opt_int(prev_term, "prevLogTerm"),
        }
    if kind == K_SNAPSHOT:
        term, commit, serialized = _fields(body, 3, "snapshot")
        if serialized is not None:
            if type(serialized) is not list or len(serialized) != 3:
                raise _bad("snapshot piece is not [data, first, last]")
            data, first, last = serialized
            serialized = (_bytes(data, "data"), _bool(first, "first"), _bool(last, "last"))
        return {
            "type": "append_entries",
            "term": _int(term, "term"),
            "commit_index": _int(commit, "commit_index"),
            "serialized": serialized,
        }
    if kind == K_REQUEST_VOTE:
        # [term, last index, last term], + [transfer] from a leadership transfer (level 3)
        term, last_idx, last_term, *transfer = _fields(
            body, 4 if len(body) == 5 else 3, "request_vote"
        )
        vote: dict[str, Any] = {
            "type": "request_vote",
            "term": _int(term, "term"),
            "last_log_index": _int(last_idx, "last_log_index"),
            "last_log_term": _int(last_term, "last_log_term"),
        }
        if transfer and _bool(transfer[0], "transfer"):
            vote["transfer"] = True
        return vote
    if kind == K_PRE_VOTE:
        term, last_idx, last_term = _fields(body, 3, "pre_vote")
        return {
            "type": "pre_vote",
            "term": _int(term, "term"),
            "last_log_index": _int(last_idx, "last_log_index"),
            "last_log_term": _int(last_term, "last_log_term"),
        }
    if kind == K_PRE_VOTE_RESPONSE:
        term, granted = _fields(body, 2, "pre_vote_response")
        return {
            "type": "pre_vote_response",
            "term": _int(term, "term"),
            "granted": _bool(granted, "granted"),
        }
    if kind == K_RESPONSE_VOTE:
        (term,) = _fields(body, 1, "response_vote")
        return {"type": "response_vote", "term": _int(term, "term")}
    if kind == K_TIMEOUT_NOW:
        (term,) = _fields(body, 1, "timeout_now")
        return {"type": "timeout_now", "term": _int(term, "term")}
    if kind == K_SESSION_KEY:
        (key,) = _fields(body, 1, "session key")
        key = _bytes(key, "session key")
        if len(key) != SESSION_KEY_BYTES:
            raise _bad(f"session key of {len(key)} bytes")
        return key
    if kind == K_MEMBER:
        name, *rest = _fields(body, 2 if len(body) == 3 else 1, "member address")
        cluster_id = rest[0] if rest else ""
        if type(name) is not str or type(cluster_id) is not str:
            raise _bad("member address or cluster id is not text")
        return MemberHello(name, cluster_id)
    if type(kind) is int and kind > K_LAST_KNOWN:
        raise WireError("unknown_kind", f"message kind {kind} of a later release")
    raise WireError("malformed", f"unknown message kind {kind!r}")


def pack_body(echo: bytes | None, message: Any) -> bytes:
    """A frame's plaintext: flag byte and msgpack body (compressed when large)."""
    body = msgpack.packb([echo, *encode_message(message)], use_bin_type=True)
    if len(body) > COMPRESS_OVER:
        return bytes((_ZLIB,)) + zlib.compress(body, 3)
    return bytes((_PLAIN,)) + body


def unpack_body(plain: bytes) -> tuple[bytes | None, Any]:
    """(echoed session key, message) of a frame's plaintext; :class:`WireError` if refused."""
    if not plain:
        raise WireError("malformed", "empty frame")
    flag = plain[0]
    if flag == _PLAIN:
        body = plain[1:]
    elif flag == _ZLIB:
        inflate = zlib.decompressobj()
        try:
            body = inflate.decompress(memoryview(plain)[1:], MAX_FRAME)
        except zlib.error as exc:
            raise WireError("malformed", f"bad compressed frame: {exc}") from None
        if inflate.unconsumed_tail or not inflate.eof:
            raise WireError("oversize", f"compressed frame inflates past {MAX_FRAME} bytes")
    elif flag == _ZLIB_HEADER:
        raise WireError(
            "pickle_wire",
            "peer speaks the pickle wire of raftcron 0.1 or pysyncobj's tools (syncobj_admin); "
            "every node must run the same raftcron version (CHANGELOG.md: full-stop upgrade)",
        )
    else:
        raise WireError("malformed", f"unknown frame format {flag:#04x}")
    try:
        decoded = msgpack.unpackb(
            body, raw=False, strict_map_key=True, max_map_len=0, max_ext_len=0, use_list=True
        )
    except Exception as exc:
        raise WireError("malformed", f"not a msgpack body ({type(exc).__name__})") from None
    if type(decoded) is not list or len(decoded) < 2:
        raise WireError("malformed", "frame body is not [session key, kind, ...]")
    echo = decoded[0]
    if echo is not None and type(echo) is not bytes:
        raise WireError("malformed", "echoed session key is not binary")
    return echo, decode_message(decoded[1:])


# --------------------------------------------------------------------------------------------
# Secrets


class Keyring:
    """The Fernet keys of the accepted cluster secrets, derived once; index 0 is current."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets or not all(secrets):
            raise ValueError("the raft wire needs a non-empty cluster secret")
        # pysyncobj's key derivation (PBKDF2-SHA256, 100,000 rounds): done here, never per
        # message.
        self._fernets: tuple[Fernet, ...] = tuple(getEncryptor(s) for s in secrets)

    def __len__(self) -> int:
        return len(self._fernets)

    def seal(self, index: int, plain: bytes) -> bytes:
        return self._fernets[index].encrypt_at_time(plain, int(monotonic()))

    def open(self, token: bytes, prefer: int = 0) -> tuple[int, bytes]:
        """(index of the key that authenticated ``token``, plaintext)."""
        fernets = self._fernets
        try:
            return prefer, fernets[prefer].decrypt(token)
        except InvalidToken:
            pass
        for i, fernet in enumerate(fernets):
            if i == prefer:
                continue
            try:
                return i, fernet.decrypt(token)
            except InvalidToken:
                continue
        raise WireError("secret", "frame does not decrypt with the cluster secret")


def token_time(token: bytes) -> int:
    """The timestamp of a Fernet token that decrypted (bytes 1-8 of its decoded form)."""
    head = base64.urlsafe_b64decode(token[:12])
    value: int = int.from_bytes(head[1:9], "big")
    return value


# --------------------------------------------------------------------------------------------
# Frames


class FrameReader:
    """Splits a byte stream into ``<u32 length><payload>`` frames, linear in its input.

    ``limit`` is the largest payload accepted: a larger length raises :class:`WireError`
    as soon as its 4 bytes are in, before the payload is buffered.
    """

    __slots__ = ("_buf", "limit")

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        buf = self._buf
        if len(buf) < 4:
            return None
        (n,) = _PREFIX.unpack_from(buf)
        if n > self.limit:
            raise WireError(
                "oversize", f"frame of {n} bytes announced (the limit here is {self.limit})"
            )
        if n == 0:
            raise WireError("malformed", "empty frame")
        if len(buf) - 4 < n:
            return None
        with memoryview(buf) as view:
            frame = bytes(view[4 : 4 + n])
        del buf[: 4 + n]  # bytearray drops a prefix without moving the rest
        return frame


def frame(payload: bytes) -> bytes:
    return _PREFIX.pack(len(payload)) + payload


@dataclass(slots=True)
class WireStats:
    """Counters one transport keeps (tests and the large-frame log line read them)."""

    refused: Counter[str]
    largest_in: int = 0
    largest_out: int = 0

    def saw(self, size: int, *, outgoing: bool, peer: str) -> None:
        old = self.largest_out if outgoing else self.largest_in
        if size <= old:
            return
        if outgoing:
            self.largest_out = size
        else:
            self.largest_in = size
        if size >= LARGE_FRAME_LOG and size.bit_length() > old.bit_length():
            logger.info(
                "raft wire: largest frame %s %s so far: %d bytes (the limit is %d)",
                "to" if outgoing else "from",
                peer,
                size,
                MAX_FRAME,
            )


class RefusalLog:
    """Refused connections as log lines: at most ``BURST`` per ``WINDOW_S``, then one
    summary line per window with counts by reason and by source address."""

    WINDOW_S: Final = 10.0
    BURST: Final = 10

    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._logged = 0
        self._by_reason: Counter[str] = Counter()
        self._by_source: Counter[str] = Counter()

    def refuse(self, peer: str, code: str, reason: str) -> None:
        self.flush()
        if self._logged < self.BURST:
            self._logged += 1
            logger.warning("raft port: refused %s: %s", peer or "?", reason)
            return
        self._by_reason[code] += 1
        self._by_source[_host_of(peer)] += 1

    def flush(self) -> None:
        now = self._clock()
        if now - self._start < self.WINDOW_S:
            return
        if self._by_reason:
            sources = ", ".join(f"{s} {n}" for s, n in self._by_source.most_common(3))
            more = len(self._by_source) - 3
            logger.warning(
                "raft port: refused %d more connections in the last %.0fs (by reason: %s; "
                "from: %s%s)",
                sum(self._by_reason.values()),
                now - self._start,
                ", ".join(f"{c} {n}" for c, n in self._by_reason.most_common()),
                sources,
                f" and {more} more sources" if more > 0 else "",
            )
        self._start, self._logged = now, 0
        self._by_reason.clear()
        self._by_source.clear()


def _host_of(peer: str) -> str:
    return peer.rsplit(":", 1)[0] if ":" in peer else peer


def _describe(message: Any) -> str:
    if isinstance(message, dict):
        return f"a {message.get('type')!r} message"
    text = repr(message)
    return f"{type(message).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def set_peer_socket_options(sock: socket.socket, keepalive: tuple[int, int, int] | None) -> None:
    """Keepalive (pysyncobj's ``tcp_keepalive``) and :data:`PEER_USER_TIMEOUT_MS`."""
    if keepalive is not None:
        idle, interval, fails = keepalive
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, fails)
    if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, PEER_USER_TIMEOUT_MS)


# --------------------------------------------------------------------------------------------
# Connections


_CONNECTED: Final = CONNECTION_STATE.CONNECTED
_CONNECTING: Final = CONNECTION_STATE.CONNECTING
_DISCONNECTED: Final = CONNECTION_STATE.DISCONNECTED
_READ: Final = POLL_EVENT_TYPE.READ
_WRITE: Final = POLL_EVENT_TYPE.WRITE
_ERROR: Final = POLL_EVENT_TYPE.ERROR


class PeerConnection:
    """One Raft TCP connection: pysyncobj's ``TcpConnection`` interface on this wire.

    ``sendRandKey``/``recvRandKey`` are pysyncobj's session keys (the transport sets them
    during the handshake): frames sent carry ``sendRandKey``, frames received must carry
    ``recvRandKey`` once it is set.
    """

    def __init__(
        self,
        poller: Any,
        keyring: Keyring,
        stats: WireStats,
        *,
        on_refused: Callable[[PeerConnection, str, str], None],
        on_authenticated: Callable[[PeerConnection], None] | None = None,
        sock: socket.socket | None = None,
        peer: str = "",
        timeout: float,
        send_buffer: int,
        recv_buffer: int,
        keepalive: tuple[int, int, int] | None = None,
    ) -> None:
        self.sendRandKey: bytes | None = None
        self.recvRandKey: bytes | None = None
        self.recvLastTimestamp = 0
        self.encryptor: Any = None  # pysyncobj's transport sets it; the keyring is used
        self.peer = peer
        self.authenticated = False  # a frame from the peer decrypted
        self._unknown_logged = False  # a later release's message kind was logged
        self.key_index = 0  # the keyring's key this connection sends with
        self._poll = poller
        self._keyring = keyring
        self._stats = stats
        self._on_refused = on_refused
        self._on_authenticated = on_authenticated
        self._on_message: Callable[[Any], None] | None = None
        self._on_connected: Callable[[], None] | None = None
        self._on_disconnected: Callable[[], None] | None = None
        self._timeout = timeout
        self._send_buffer = send_buffer
        self._recv_buffer = recv_buffer
        self._keepalive = keepalive
        self._reader = FrameReader(PREAUTH_MAX_FRAME)
        self._wbuf = bytearray()
        self._last_read = monotonic()
        self._want_write = False
        self._tcp_up = False  # an outgoing attempt reached the peer's kernel
        self._sock = sock
        if sock is not None:
            self._fileno: int | None = sock.fileno()
            self._state = _CONNECTED
            self._tcp_up = True
            poller.subscribe(self._fileno, self._on_event, _READ | _ERROR)
        else:
            self._fileno = None
            self._state = _DISCONNECTED

    # -- pysyncobj's TcpConnection interface

    def setOnConnectedCallback(self, callback: Callable[[], None] | None) -> None:
        self._on_connected = callback

    def setOnMessageReceivedCallback(self, callback: Callable[[Any], None] | None) -> None:
        self._on_message = callback

    def setOnDisconnectedCallback(self, callback: Callable[[], None] | None) -> None:
        self._on_disconnected = callback

    @property
    def state(self) -> int:
        return int(self._state)

    @property
    def raw_socket(self) -> socket.socket | None:
        return self._sock

    def fileno(self) -> int | None:
        return self._fileno

    def getSendBufferSize(self) -> int:
        return len(self._wbuf)

    def connect(self, host: str | None, port: int) -> bool:
        if host is None:
            return False
        self._reset()
        self.peer = f"{host}:{port}"
        sock = socket.socket(addr_family(host), socket.SOCK_STREAM)
        self._sock = sock
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            set_peer_socket_options(sock, self._keepalive)
            sock.setblocking(False)
            sock.connect((host, port))
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                sock.close()
                self._sock = None
                return False
        self._fileno = sock.fileno()
        self._state = _CONNECTING
        self._poll.subscribe(self._fileno, self._on_event, _READ | _WRITE | _ERROR)
        return True

    def send(self, message: Any) -> None:
        try:
            plain = pack_body(self.sendRandKey, message)
        except (WireError, KeyError, TypeError, ValueError, OverflowError) as exc:
            logger.error("raft wire: not sending %s to %s: %s", _describe(message), self.peer, exc)
            return
        token = self._keyring.seal(self.key_index, plain)
        if len(token) > MAX_FRAME:
            logger.error(
                "raft wire: not sending %s of %d bytes to %s: over the %d-byte frame limit",
                _describe(message),
                len(token),
                self.peer,
                MAX_FRAME,
            )
            return
        self._stats.saw(len(token), outgoing=True, peer=self.peer)
        self._wbuf += _PREFIX.pack(len(token))
        self._wbuf += token
        self._try_send()

    def read_now(self) -> None:
        """Read and handle what the socket holds now: a deadline decides on a connection
        only after its waiting frames were seen (the tick thread may have been late)."""
        sock = self._sock
        if sock is not None and self._state == _CONNECTED and self._read(sock):
            self._deliver()

    def disconnect(self) -> None:
        notify = self._on_disconnected is not None and self._state != _DISCONNECTED
        if self._tcp_up and self._on_connected is not None:  # an outgoing connection
            self._after_attempt()
        self.sendRandKey = None
        self.recvRandKey = None
        self.recvLastTimestamp = 0
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._fileno is not None:
            self._poll.unsubscribe(self._fileno)
            self._fileno = None
        self._wbuf = bytearray()
        self._reader = FrameReader(PREAUTH_MAX_FRAME)
        self._state = _DISCONNECTED
        self._tcp_up = False
        self._want_write = False
        if notify and self._on_disconnected is not None:
            self._on_disconnected()

    # -- internals

    def _reset(self) -> None:
        self._reader = FrameReader(PREAUTH_MAX_FRAME)
        self._wbuf = bytearray()
        self._last_read = monotonic()
        self._want_write = False
        self._tcp_up = False
        self.authenticated = False

    def _after_attempt(self) -> None:
        """Secret rotation: the next attempt of an outgoing connection uses the current
        secret after a connection that authenticated, and the next secret after one the
        peer closed before a frame of it decrypted here."""
        if len(self._keyring) < 2:
            return
        if self.authenticated:
            self.key_index = 0
            return
        self.key_index = (self.key_index + 1) % len(self._keyring)
        logger.info(
            "raft wire: %s closed the connection before accepting our secret; the next "
            "attempt uses secret #%d (a secret rotation in progress?)",
            self.peer,
            self.key_index + 1,
        )

    def _idle_expired(self) -> bool:
        return monotonic() - self._last_read > self._timeout

    def _on_event(self, descr: int, event: int) -> None:
        if descr != self._fileno:
            self._poll.unsubscribe(descr)
            return
        if event & _ERROR:
            self.disconnect()
            return
        if self._idle_expired():
            self.disconnect()
            return
        sock = self._sock
        assert sock is not None
        if self._state == _CONNECTING:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.disconnect()
                return
            self._tcp_up = True
            if self._on_connected is not None:
                self._on_connected()
            if self._state == _DISCONNECTED:
                return
            self._state = _CONNECTED
            self._last_read = monotonic()
            self._subscribe()
            return
        if event & _WRITE:
            self._try_send()
            if self._state == _DISCONNECTED:
                return
        if event & _READ:
            if not self._read(sock):
                return
            self._deliver()

    def _subscribe(self) -> None:
        if self._fileno is None:
            return
        self._want_write = bool(self._wbuf)
        mask = _READ | _ERROR | (_WRITE if self._want_write else 0)
        self._poll.subscribe(self._fileno, self._on_event, mask)

    def _try_send(self) -> None:
        if self._state == _DISCONNECTED:
            return
        if self._idle_expired():
            self.disconnect()
            return
        sock = self._sock
        wbuf = self._wbuf
        while wbuf:
            try:
                n = sock.send(wbuf) if sock is not None else 0
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.disconnect()
                return
            if n <= 0:
                break
            del wbuf[:n]
        if self._state == _CONNECTED and bool(wbuf) != self._want_write:
            self._subscribe()

    def _read(self, sock: socket.socket) -> bool:
        reader = self._reader
        while True:
            try:
                data = sock.recv(self._recv_buffer)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.disconnect()
                return False
            if not data:
                self.disconnect()
                return False
            reader.feed(data)
            if reader.buffered > reader.limit + 4:
                break  # enough to complete or refuse a frame; the rest waits
        self._last_read = monotonic()
        return True

    def _deliver(self) -> None:
        while self._state != _DISCONNECTED:
            try:
                payload = self._reader.next_frame()
                if payload is None:
                    return
                message = self._open(payload)
            except WireError as exc:
                if exc.code == "unknown_kind" and self.authenticated:
                    # A later release's message (it decrypted: a member's): dropped, the
                    # connection kept; Raft copes with a lost message. Logged once.
                    if not self._unknown_logged:
                        self._unknown_logged = True
                        logger.warning(
                            "raft wire: dropping messages from %s that this release does not "
                            "know (%s); a member runs a later release",
                            self.peer,
                            exc.reason,
                        )
                    continue
                self._on_refused(self, exc.code, exc.reason)
                self.disconnect()
                return
            callback = self._on_message
            if callback is not None:
                callback(message)

    def _open(self, payload: bytes) -> Any:
        index, plain = self._keyring.open(payload, self.key_index)
        self._stats.saw(len(payload), outgoing=False, peer=self.peer)
        stamp = token_time(payload)
        if stamp < self.recvLastTimestamp:
            raise WireError("replay", "frame older than the previous one on this connection")
        self.recvLastTimestamp = stamp
        if not self.authenticated:
            self.authenticated = True
            self.key_index = index
            self._reader.limit = MAX_FRAME
            if self._on_authenticated is not None:
                self._on_authenticated(self)
        echo, message = unpack_body(plain)
        expected = self.recvRandKey
        if expected is None:
            if echo is not None:
                raise WireError("handshake", "unexpected session key in a first frame")
        elif echo is None or not hmac.compare_digest(echo, expected):
            raise WireError("replay", "frame not addressed to this connection's session")
        return message


class PeerServer:
    """The listening socket (replaces pysyncobj's ``TcpServer``): a real backlog, a
    bounded number of accepts per event, and no unbind on a transient accept error
    (pysyncobj's server stopped listening for good on EMFILE)."""

    _TRANSIENT: Final = frozenset(
        {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO}
    )

    def __init__(
        self,
        poller: Any,
        host: str,
        port: int,
        on_accept: Callable[[socket.socket, str], None],
        *,
        send_buffer: int,
        recv_buffer: int,
    ) -> None:
        self._poll = poller
        self._host = host
        self._port = int(port)
        self._on_accept = on_accept
        self._send_buffer = send_buffer
        self._recv_buffer = recv_buffer
        self._sock: socket.socket | None = None
        self._fileno: int | None = None
        self._accept_errors = 0

    def bind(self) -> None:
        sock = socket.socket(addr_family(self._host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind((self._host, self._port))
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._fileno = sock.fileno()
        self._poll.subscribe(self._fileno, self._on_event, _READ | _ERROR)

    def unbind(self) -> None:
        if self._fileno is not None:
            self._poll.unsubscribe(self._fileno)
            self._fileno = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _on_event(self, descr: int, event: int) -> None:
        if event & _READ and self._sock is not None:
            for _ in range(ACCEPTS_PER_EVENT):
                try:
                    sock, addr = self._sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno in self._TRANSIENT:
                        self._accept_errors += 1
                        if self._accept_errors in (1, 10, 100) or not self._accept_errors % 1000:
                            logger.warning(
                                "raft port: accept failed %d times: %s",
                                self._accept_errors,
                                exc,
                            )
                        break
                    logger.error("raft port: accept failed, no longer listening: %s", exc)
                    self.unbind()
                    return
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.setblocking(False)
                except OSError:
                    sock.close()
                    continue
                self._on_accept(sock, f"{addr[0]}:{addr[1]}")
        if event & _ERROR:
            logger.error("raft port: listening socket failed, no longer listening")
            self.unbind()


# --------------------------------------------------------------------------------------------
# The transport


class GuardedTransport(TransportBase):
    """pysyncobj's ``TCPTransport`` on :class:`PeerConnection` and :class:`PeerServer`,
    with the handshake checked and strangers bounded (the module docstring).

    The ``SyncObj`` must have a ``wire_keyring`` attribute (a :class:`Keyring`) before it
    builds its transport, and a node address of its own (read-only nodes are refused).
    """

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        keyring = getattr(syncObj, "wire_keyring", None)
        if not isinstance(keyring, Keyring):
            raise TypeError("GuardedTransport needs syncObj.wire_keyring (a Keyring)")
        if selfNode is None:
            raise ValueError("read-only pysyncobj nodes are not supported")
        self._keyring = keyring
        # The cluster id of this member's state (State.cluster_id), read at each handshake:
        # a peer of another cluster is refused (a restored cluster never joins the old one).
        self._cluster_id: Callable[[], str] = getattr(syncObj, "wire_cluster_id", lambda: "")
        # Why a member at this raft address is refused (it was removed), or None.
        self._removed: Callable[[str], str | None] = getattr(
            syncObj, "wire_removed", lambda _address: None
        )
        self.stats = WireStats(refused=Counter())
        self._refusals = RefusalLog()
        # Incoming connections whose handshake is not complete, oldest first: deadline.
        self._handshaking: dict[PeerConnection, float] = {}
        # Those of them with no authenticated frame yet, oldest first: source address.
        self._unauthenticated: dict[PeerConnection, str] = {}
        self._unauthenticated_by_source: Counter[str] = Counter()
        super().__init__(syncObj, selfNode, otherNodes)

    # -- TransportBase hooks

    def make_server(self, host: str, port: int) -> PeerServer:
        conf = self.syncobj.conf
        return PeerServer(
            self.poller,
            host,
            port,
            self._accept,
            send_buffer=conf.sendBufferSize,
            recv_buffer=conf.recvBufferSize,
        )

    def new_connection(self, peer: str) -> PeerConnection:
        return self._connection(peer=peer)

    def refuse(self, conn: Any, code: str, reason: str) -> None:
        self._close(conn, code, reason)

    def forget(self, conn: Any) -> None:
        self._forget(conn)

    def peer_connected(self, conn: Any) -> None:
        sock = conn.raw_socket
        if sock is not None:
            with contextlib.suppress(OSError):
                set_peer_socket_options(sock, self.syncobj.conf.tcp_keepalive)

    def describe(self, message: Any) -> str:
        return _describe(message)

    def before_tick(self) -> None:
        self._expire_handshakes()
        self._refusals.flush()

    def member_hello(self) -> MemberHello:
        return MemberHello(self.self_address, self._cluster_id())

    def admit_member(self, conn: Any, message: Any) -> bool:
        theirs, ours = getattr(message, "cluster_id", ""), self._cluster_id()
        if theirs == ours:
            # A member removed from the replicated membership (raftcron/membership.py) is
            # refused even while this node's Raft configuration still names it (at start,
            # before the removal is replayed): it never votes or takes entries again.
            why = self._removed(str(message))
            if why is None:
                return True
            self._close(conn, "removed_member", why)
            return False
        self._close(
            conn,
            "cluster_id",
            f"{message} belongs to cluster {theirs or '(none)'}, this node to cluster "
            f"{ours or '(none)'}: members of different clusters never talk (a restored "
            "cluster never joins the old one; docs/operations.md: Back up and restore; a "
            "new member of a cluster with an id starts empty with --cluster-id ID, which "
            "raftcron members add prints)",
        )
        return False

    # -- admission

    def _connection(self, *, sock: socket.socket | None = None, peer: str) -> PeerConnection:
        conf = self.syncobj.conf
        return PeerConnection(
            self.poller,
            self._keyring,
            self.stats,
            on_refused=self._refused,
            on_authenticated=self._authenticated,
            sock=sock,
            peer=peer,
            timeout=conf.connectionTimeout,
            send_buffer=conf.sendBufferSize,
            recv_buffer=conf.recvBufferSize,
            keepalive=conf.tcp_keepalive,
        )

    def _accept(self, sock: socket.socket, peer: str) -> None:
        source = _host_of(peer)
        waiting = self._unauthenticated_by_source
        if len(self._unauthenticated) >= MAX_UNAUTHENTICATED or (
            waiting[source] >= MAX_UNAUTHENTICATED_PER_SOURCE
        ):
            busiest = (
                source
                if waiting[source] >= MAX_UNAUTHENTICATED_PER_SOURCE
                else waiting.most_common(1)[0][0]
            )
            victim = next(c for c, s in self._unauthenticated.items() if s == busiest)
            self._close(
                victim,
                "too_many_unauthenticated",
                f"too many connections waiting to authenticate ({len(self._unauthenticated)}, "
                f"{waiting[busiest]} from {busiest}): closing the oldest of them",
            )
        conn = self._connection(sock=sock, peer=peer)
        self._handshaking[conn] = monotonic() + HANDSHAKE_DEADLINE_S
        self._unauthenticated[conn] = source
        waiting[source] += 1
        self.adopt_incoming(conn)

    def _authenticated(self, conn: PeerConnection) -> None:
        source = self._unauthenticated.pop(conn, None)
        if source is not None:
            self._uncount(source)

    def _uncount(self, source: str) -> None:
        waiting = self._unauthenticated_by_source
        waiting[source] -= 1
        if waiting[source] <= 0:
            del waiting[source]

    def _forget(self, conn: PeerConnection) -> None:
        self._handshaking.pop(conn, None)
        self._authenticated(conn)

    def _expire_handshakes(self) -> None:
        now = monotonic()
        pending = self._handshaking
        while pending:
            conn, deadline = next(iter(pending.items()))
            if deadline > now:
                return
            conn.read_now()
            if conn not in pending:
                continue  # its handshake was waiting in the socket: done now
            what = "handshake" if conn.authenticated else "authenticated frame"
            self._close(
                conn,
                "handshake_deadline",
                f"no {what} within {HANDSHAKE_DEADLINE_S:g}s of connecting",
            )

    def _refused(self, conn: PeerConnection, code: str, reason: str) -> None:
        self.stats.refused[code] += 1
        self._refusals.refuse(conn.peer, code, reason)

    def _close(self, conn: PeerConnection, code: str, reason: str) -> None:
        self._refused(conn, code, reason)
        self._forget(conn)
        self.drop_incoming(conn)
        conn.disconnect()
