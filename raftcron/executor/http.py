"""HTTP jobs: one request per run, under the same fenced lease as a process run.

The runner commits the fenced ``Start`` first (nothing is sent before it commits), then
hands the run to :func:`execute_http`, which sends the request, renews the lease every D/3
exactly like a process run, and returns what the runner records with its fenced
``Complete``.

Where it differs from a process run: there is no watchdog process. The agent itself aborts
the request ``lease_grace`` before its local lease deadline (``t_send + D*(1-rho)/(1+rho) -
m``), when a renewal is refused as stale, or at the job's ``timeout``. A *frozen* agent
(SIGSTOP) cannot abort its in-flight request: that is the documented limit, and why every
request carries the fence in ``X-Raftcron-Fence``. A receiver that stores the highest fence
it has seen per job and refuses lower ones cannot be written to by a stale run.

Outcome mapping (docs/jobs.md, "HTTP jobs"):

* a response whose status is in ``expect`` (any 2xx when ``expect`` is empty):
  ``succeeded``; any other status: ``failed``. ``exit_code`` is the HTTP status.
* no response (connection refused, DNS, TLS, reset): ``failed`` with ``exit_code`` None.
* the job's ``timeout`` (default :data:`DEFAULT_HTTP_TIMEOUT_S`): ``timed_out``, None.
* the lease deadline or a refused renewal: ``lost``, None.

The output kept in the ledger is ``HTTP <status> <reason>`` and the tail of the body.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

import aiohttp

from raftcron.core.model import (
    FAILED,
    LOST,
    OUTPUT_TAIL_BYTES,
    SUCCEEDED,
    TIMED_OUT,
    HttpSpec,
    JobSpec,
    Run,
)
from raftcron.executor.lease import FencedRun

logger = logging.getLogger(__name__)

DEFAULT_HTTP_TIMEOUT_S: Final = 30.0
# Headers every request of an HTTP job carries (a job's own headers cannot use the prefix).
HEADER_FENCE: Final = "X-Raftcron-Fence"
HEADER_RUN_ID: Final = "X-Raftcron-Run-Id"
HEADER_JOB: Final = "X-Raftcron-Job"
HEADER_SCHEDULED_AT: Final = "X-Raftcron-Scheduled-At"
HEADER_ATTEMPT: Final = "X-Raftcron-Attempt"
HEADER_NODE: Final = "X-Raftcron-Node"
HEADER_PARENT_RUN_ID: Final = "X-Raftcron-Parent-Run-Id"
USER_AGENT: Final = "raftcron"


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    status: str  # SUCCEEDED, FAILED, TIMED_OUT or LOST
    exit_code: int | None  # the HTTP status, None without a response
    output: str
    reason: str


def run_headers(run: Run, node: str, scheduled_at: str) -> dict[str, str]:
    """The X-Raftcron-* headers of one run's request."""
    headers = {
        HEADER_FENCE: str(run.fence),
        HEADER_RUN_ID: run.id,
        HEADER_JOB: run.job,
        HEADER_SCHEDULED_AT: scheduled_at,
        HEADER_ATTEMPT: str(run.attempt),
        HEADER_NODE: node,
    }
    if run.parents:  # a dependency run: the parents' run ids, comma-separated
        headers[HEADER_PARENT_RUN_ID] = ",".join(run.parents)
    return headers


def expected(status: int, expect: tuple[int, ...]) -> bool:
    """Whether ``status`` counts as success: in ``expect``, or any 2xx when it is empty."""
    return status in expect if expect else 200 <= status < 300


def expected_text(expect: tuple[int, ...]) -> str:
    return ", ".join(str(c) for c in expect) if expect else "2xx"


def outcome_of_response(
    status: int, reason: str, body: bytes, expect: tuple[int, ...]
) -> HttpOutcome:
    """What a response means for the run (pure; unit-tested)."""
    text = f"HTTP {status} {reason}".rstrip() + "\n"
    text += body[-(OUTPUT_TAIL_BYTES - len(text)) :].decode("utf-8", errors="replace")
    if expected(status, expect):
        return HttpOutcome(SUCCEEDED, status, text, "")
    return HttpOutcome(FAILED, status, text, f"HTTP {status}, expected {expected_text(expect)}")


async def _request(
    session: aiohttp.ClientSession, http: HttpSpec, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    async with session.request(
        http.method,
        http.url,
        headers=headers,
        data=http.body.encode("utf-8") if http.body else None,
    ) as resp:
        tail = bytearray()
        async for chunk in resp.content.iter_chunked(65536):
            tail += chunk
            if len(tail) > OUTPUT_TAIL_BYTES:
                del tail[: len(tail) - OUTPUT_TAIL_BYTES]
        return resp.status, resp.reason or "", bytes(tail)


async def execute_http(
    *,
    spec: JobSpec,
    run: Run,
    node: str,
    scheduled_at: str,
    lease: FencedRun,
    lease_grace: float,
) -> HttpOutcome:
    """Send the job's request (its fenced ``Start`` has committed) and say how it ended.

    ``lease.deadline`` is the local lease deadline on the clock's monotonic time; the
    request is aborted ``lease_grace`` before it unless a committed renewal moved it.
    """
    assert spec.http is not None
    http = spec.http
    clock = lease.clock
    window = lease.window
    ctx = lease.ctx
    timeout_s = DEFAULT_HTTP_TIMEOUT_S if spec.timeout_ms is None else spec.timeout_ms / 1000
    timeout_at = clock.monotonic() + timeout_s
    headers = {"User-Agent": USER_AGENT, **dict(http.headers)}
    headers.update(run_headers(run, node, scheduled_at))
    loop = asyncio.get_running_loop()
    renew = loop.create_task(lease.renew_loop("aborting the request"))
    logger.info(
        "%s: %s %s (lease %.1fs)",
        ctx,
        http.method,
        http.url,
        window,
        extra={"event": "run_started"},
    )
    # The session's own timeout is a backstop; the loop below aborts on time.
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s + 5))
    req = loop.create_task(_request(session, http, headers))
    stopped: HttpOutcome | None = None
    try:
        while not req.done():
            now = clock.monotonic()
            if lease.lost.is_set():
                stopped = HttpOutcome(LOST, None, "", "lease lost: " + lease.lost_reason)
            elif now >= lease.deadline - lease_grace:
                stopped = HttpOutcome(
                    LOST, None, "", "lease deadline reached without a renewal; request aborted"
                )
            elif now >= timeout_at:
                stopped = HttpOutcome(
                    TIMED_OUT, None, "", f"timeout of {timeout_s:g}s reached; request aborted"
                )
            if stopped is not None:
                req.cancel()
                break
            wake = min(lease.deadline - lease_grace, timeout_at, now + 0.25)
            await asyncio.wait({req}, timeout=max(0.0, wake - now))
    finally:
        renew.cancel()
        if not req.done():
            req.cancel()
        await asyncio.gather(renew, req, return_exceptions=True)
        await session.close()
    if stopped is not None:
        return stopped
    try:
        status, reason, body = req.result()
    except TimeoutError:
        return HttpOutcome(TIMED_OUT, None, "", f"timeout of {timeout_s:g}s reached")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return HttpOutcome(FAILED, None, f"error: {detail}\n", f"no response: {detail}")
    return outcome_of_response(status, reason, body, http.expect)
