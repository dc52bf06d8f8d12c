"""API authentication (bearer tokens) and the API's TLS context.

Rules (docs/design.md, "Security model"), decided by :meth:`Authorizer.decide`, a pure
function of the method, the path and the ``Authorization`` header:

* No tokens configured: everything is open. The config refuses that unless every API is
  on loopback or the operator wrote ``api.insecure = true`` (``config.py``), so this is the
  single-node default and ``raftcron dev``.
* Tokens configured: every request needs ``Authorization: Bearer <token>``, on loopback
  too. GET, HEAD and OPTIONS need a ``read`` or ``admin`` token; anything else (PUT, POST,
  DELETE) needs ``admin``.
* ``GET /v1/snapshot`` (a backup: the whole state, secrets included) needs ``admin``.
* Except: ``/health``, ``/health/leader`` and ``/metrics`` are open while
  ``api.open_health`` is true (the default), for load balancers and scrapers; and the
  dashboard page (``GET /``) is always open, because it carries no data: its own requests
  carry the token.
* A missing, malformed or unknown token is 401 with ``WWW-Authenticate: Bearer``; a read
  token on a write is 403. Both bodies are ``{"error": {"code", "message"}}``.

Tokens are compared with :func:`hmac.compare_digest` against every configured token (no
early exit), so the time taken says nothing about which bytes matched. No token ever
appears in a response or a log line.

The middleware is inserted first in the application's middleware list, so nothing else
(not even error mapping) runs for a refused request.
"""

from __future__ import annotations

import hmac
import logging
import ssl
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from raftcron.api.dashboard import PATH as DASHBOARD_PATH
from raftcron.api.http import NODE_KEY, error
from raftcron.config import ApiConfig, ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "ADMIN_READ_PATHS",
    "AUTHORIZER_KEY",
    "HEALTH_PATHS",
    "READ_METHODS",
    "WHOAMI_PATH",
    "Authorizer",
    "AuthorizerSlot",
    "Caller",
    "Refusal",
    "caller_of",
    "middleware",
    "register",
    "sees_secrets",
    "server_ssl_context",
]

READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
HEALTH_PATHS: Final = frozenset({"/health", "/health/leader", "/metrics"})
PUBLIC_PATHS: Final = frozenset({DASHBOARD_PATH})  # read methods only
# Read methods only, without a token: the request and the answer are sealed with the
# cluster secret instead (raftcron/membership.py: a removed member asks whether it was).
SEALED_PATHS: Final = frozenset({"/v1/membership/standing"})
# Reads that need an admin token: the whole replicated state, secrets included.
ADMIN_READ_PATHS: Final = frozenset({"/v1/snapshot"})
REALM: Final = "raftcron"


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why a request is refused: the HTTP status, an error code and a message."""

    status: int  # 401 or 403
    code: str  # "unauthorized" or "forbidden"
    message: str
    challenge: str  # the WWW-Authenticate value (401 only; "" for 403)

    def response(self) -> web.Response:
        headers = {"WWW-Authenticate": self.challenge} if self.challenge else {}
        return error(self.status, self.code, self.message, headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who sent a request, as the audit log and ``GET /v1/whoami`` name it: the role it
    acts with and its token's name (never the token)."""

    role: str | None  # "admin", "read", or None (no token, or an unknown one)
    token: str | None  # the token's name; None on an open API or without a known token

    @property
    def label(self) -> str:
        if self.token is not None:
            return self.token
        return "open-api" if self.role == "admin" else "unauthenticated"


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorizer:
    tokens: tuple[tuple[bytes, str], ...] = ()  # (token bytes, role)
    open_health: bool = True
    names: tuple[str, ...] = ()  # each token's name, in the order of ``tokens``

    @classmethod
    def from_config(cls, api: ApiConfig) -> Authorizer:
        return cls(
            tokens=tuple((t.token.encode("utf-8"), t.role) for t in api.tokens),
            open_health=api.open_health,
            names=tuple(t.name or f"token-{i + 1}" for i, t in enumerate(api.tokens)),
        )

    def __repr__(self) -> str:  # never show a token
        return f"Authorizer(tokens={len(self.tokens)}, open_health={self.open_health!r})"

    @property
    def enforcing(self) -> bool:
        return bool(self.tokens)

    def role_of(self, token: str) -> str | None:
        """The role of ``token``, or None; compares against every token, in constant time."""
        found = self._find(token)
        return None if found is None else self.tokens[found][1]

    def _find(self, token: str) -> int | None:
        given = token.encode("utf-8")
        found: int | None = None
        for i, (secret, _) in enumerate(self.tokens):
            if hmac.compare_digest(given, secret) and found is None:
                found = i
        return found

    def caller(self, authorization: str | None) -> Caller:
        """Who a request with this ``Authorization`` header is: its role (as
        :meth:`role_for`) and its token's name."""
        if not self.tokens:
            return Caller(role="admin", token=None)
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Caller(role=None, token=None)
        found = self._find(token.strip())
        if found is None:
            return Caller(role=None, token=None)
        name = self.names[found] if found < len(self.names) else f"token-{found + 1}"
        return Caller(role=self.tokens[found][1], token=name)

    def role_for(self, authorization: str | None) -> str | None:
        """The role a request with this ``Authorization`` header acts with: ``"admin"``
        on an open API (no tokens), the token's role, or None (no token, or not a known
        one: it sees what a read token sees, where it may read at all)."""
        if not self.tokens:
            return "admin"
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.role_of(token.strip())

    def decide(self, method: str, path: str, authorization: str | None) -> Refusal | None:
        """None to let the request through, else why not."""
        if not self.tokens:
            return None
        read = method.upper() in READ_METHODS
        if read and (path in PUBLIC_PATHS or path in SEALED_PATHS):
            return None
        if self.open_health and path in HEALTH_PATHS:
            return None
        challenge = f'Bearer realm="{REALM}"'
        if not authorization:
            return Refusal(
                status=401,
                code="unauthorized",
                message="this API needs a token: send Authorization: Bearer <token> "
                "(raftcron --token or RAFTCRON_TOKEN)",
                challenge=challenge,
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Refusal(
                status=401,
                code="unauthorized",
                message="malformed Authorization header (send Authorization: Bearer <token>)",
                challenge=f'{challenge}, error="invalid_request"',
            )
        role = self.role_of(token)
        if role is None:
            return Refusal(
                status=401,
                code="unauthorized",
                message="unknown token (use a token from [[api.tokens]] in the cluster config)",
                challenge=f'{challenge}, error="invalid_token"',
            )
        if read and role != "admin" and path in ADMIN_READ_PATHS:
            return Refusal(
                status=403,
                code="forbidden",
                message=f"{method.upper()} {path} reads the whole state, secrets included, and "
                f"needs an admin token; this token has the {role} role",
                challenge="",
            )
        if not read and role != "admin":
            return Refusal(
                status=403,
                code="forbidden",
                message=f"{method.upper()} {path} changes the cluster and needs an admin token; "
                f"this token has the {role} role",
                challenge="",
            )
        return None


class AuthorizerSlot:
    """The authorizer in force; a reload (``raftcron/reload.py``) swaps it whole."""

    __slots__ = ("current",)

    def __init__(self, current: Authorizer) -> None:
        self.current = current


def middleware(authorizer: Authorizer | AuthorizerSlot) -> Middleware:
    """The aiohttp middleware enforcing ``authorizer`` (a slot's current one)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        now = authorizer.current if isinstance(authorizer, AuthorizerSlot) else authorizer
        refusal = now.decide(request.method, request.path, request.headers.get("Authorization"))
        if refusal is not None:
            return refusal.response()
        return await handler(request)

    return authenticate


AUTHORIZER_KEY: Final[web.AppKey[AuthorizerSlot]] = web.AppKey("authorizer", AuthorizerSlot)


def sees_secrets(request: web.Request) -> bool:
    """Whether this request may see secrets in job definitions (an admin token, or an
    open API); a read token sees them redacted (``raftcron.api.http.REDACTED``)."""
    slot = request.app.get(AUTHORIZER_KEY)
    if slot is None:  # an app without auth (tests): nothing to protect
        return True
    return slot.current.role_for(request.headers.get("Authorization")) == "admin"


def caller_of(request: web.Request) -> Caller:
    """Who sent ``request`` (see :class:`Caller`)."""
    slot = request.app.get(AUTHORIZER_KEY)
    if slot is None:
        return Caller(role="admin", token=None)
    return slot.current.caller(request.headers.get("Authorization"))


WHOAMI_PATH: Final = "/v1/whoami"


async def whoami(request: web.Request) -> web.Response:
    """The caller's role and token name: what a client (the dashboard) may offer to do."""
    caller = caller_of(request)
    return web.json_response({"role": caller.role, "token": caller.token})


def register(app: web.Application) -> None:
    """Put the auth middleware first in ``app`` and add ``GET /v1/whoami``; call after
    ``app[NODE_KEY]`` is set."""
    node = app.get(NODE_KEY)
    if node is None:
        raise RuntimeError("auth.register(app) needs app[NODE_KEY] set first")
    authorizer = Authorizer.from_config(node.config.api)
    slot = AuthorizerSlot(authorizer)
    app[AUTHORIZER_KEY] = slot
    app.router.add_get(WHOAMI_PATH, whoami)
    if not authorizer.enforcing:
        exposed = [n.name for n in node.config.cluster.nodes if not n.api.is_loopback]
        if exposed:
            logger.warning(
                "node %s: the API has no tokens and api.insecure = true: anyone who reaches "
                "%s can change jobs",
                node.name,
                ", ".join(exposed),
            )
    app.middlewares.insert(0, middleware(slot))


def server_ssl_context(api: ApiConfig) -> ssl.SSLContext | None:
    """The API's TLS context when ``api.tls_cert``/``api.tls_key`` are set, else None.

    Raises :class:`ConfigError` (naming the files, never their content) when they do not
    load: not PEM, key and certificate do not match, unreadable.
    """
    if api.tls_cert is None or api.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile=api.tls_cert, keyfile=api.tls_key)
    except ssl.SSLError as exc:
        reason = f"not PEM, or the key is not the certificate's ({exc.reason or exc})"
        raise ConfigError(
            [
                f"api.tls_cert/api.tls_key: cannot load {api.tls_cert} with {api.tls_key}: "
                f"{reason} (give a PEM certificate and its unencrypted PEM private key)"
            ]
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            [
                f"api.tls_cert/api.tls_key: cannot load {api.tls_cert} with {api.tls_key}: "
                f"{reason} (give a PEM certificate and its unencrypted PEM private key)"
            ]
        ) from None
    return ctx
