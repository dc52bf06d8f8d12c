"""Auth: who may call what, on a small aiohttp app; the TLS context; the bind refusal."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from raftcron.api import auth
from raftcron.api.app import NODE_KEY
from raftcron.config import ApiConfig, ApiToken, ConfigError, load_config
from tests.tls import self_signed

ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
TOKENS = (ApiToken(role="admin", token=ADMIN), ApiToken(role="read", token=READ))
SECURED = ApiConfig(tokens=TOKENS)
CLOSED_HEALTH = ApiConfig(tokens=TOKENS, open_health=False)

# (api config, method, path, Authorization header, expected status, expected error code)
CASES: list[tuple[str, ApiConfig, str, str, str | None, int, str | None]] = [
    ("open-no-tokens-read", ApiConfig(), "GET", "/v1/jobs", None, 200, None),
    ("open-no-tokens-write", ApiConfig(), "PUT", "/v1/jobs/x", None, 200, None),
    ("open-no-tokens-junk-header", ApiConfig(), "DELETE", "/v1/jobs/x", "Bearer nope", 200, None),
    ("missing-read", SECURED, "GET", "/v1/jobs", None, 401, "unauthorized"),
    ("missing-write", SECURED, "POST", "/v1/jobs/x/trigger", None, 401, "unauthorized"),
    (
        "wrong-token",
        SECURED,
        "GET",
        "/v1/jobs",
        "Bearer not-a-token-at-all-0000",
        401,
        "unauthorized",
    ),
    ("prefix-of-token", SECURED, "GET", "/v1/jobs", f"Bearer {ADMIN[:-1]}", 401, "unauthorized"),
    ("not-bearer", SECURED, "GET", "/v1/jobs", f"Basic {ADMIN}", 401, "unauthorized"),
    ("empty-bearer", SECURED, "GET", "/v1/jobs", "Bearer ", 401, "unauthorized"),
    ("read-reads", SECURED, "GET", "/v1/jobs", f"Bearer {READ}", 200, None),
    ("read-head", SECURED, "HEAD", "/v1/jobs", f"Bearer {READ}", 200, None),
    ("read-scheme-any-case", SECURED, "GET", "/v1/jobs", f"bearer {READ}", 200, None),
    ("read-writes-put", SECURED, "PUT", "/v1/jobs/x", f"Bearer {READ}", 403, "forbidden"),
    ("read-writes-post", SECURED, "POST", "/v1/jobs/x/trigger", f"Bearer {READ}", 403, "forbidden"),
    ("read-writes-delete", SECURED, "DELETE", "/v1/jobs/x", f"Bearer {READ}", 403, "forbidden"),
    ("admin-reads", SECURED, "GET", "/v1/jobs", f"Bearer {ADMIN}", 200, None),
    ("admin-writes", SECURED, "PUT", "/v1/jobs/x", f"Bearer {ADMIN}", 200, None),
    ("admin-deletes", SECURED, "DELETE", "/v1/jobs/x", f"Bearer {ADMIN}", 200, None),
    ("unknown-path-needs-token", SECURED, "GET", "/nowhere", None, 401, "unauthorized"),
    ("unknown-path-with-token", SECURED, "GET", "/nowhere", f"Bearer {READ}", 404, None),
    ("health-open", SECURED, "GET", "/health", None, 200, None),
    ("health-leader-open", SECURED, "GET", "/health/leader", None, 200, None),
    ("metrics-open", SECURED, "GET", "/metrics", None, 200, None),
    ("health-open-wrong-token", SECURED, "GET", "/health", "Bearer wrong", 200, None),
    ("health-closed", CLOSED_HEALTH, "GET", "/health", None, 401, "unauthorized"),
    ("health-leader-closed", CLOSED_HEALTH, "GET", "/health/leader", None, 401, "unauthorized"),
    ("metrics-closed", CLOSED_HEALTH, "GET", "/metrics", None, 401, "unauthorized"),
    ("metrics-closed-read", CLOSED_HEALTH, "GET", "/metrics", f"Bearer {READ}", 200, None),
    ("dashboard-open", CLOSED_HEALTH, "GET", "/", None, 200, None),
    ("dashboard-post-not-open", SECURED, "POST", "/", None, 401, "unauthorized"),
    ("health-subpath-not-open", SECURED, "GET", "/health/x", None, 401, "unauthorized"),
]


def _app(api: ApiConfig) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "method": request.method})

    app = web.Application()
    app.middlewares.append(auth.middleware(auth.Authorizer.from_config(api)))
    for path in ("/", "/v1/jobs", "/v1/jobs/{name}", "/v1/jobs/{name}/trigger", "/health"):
        app.router.add_route("*", path, ok)
    app.router.add_get("/health/leader", ok)
    app.router.add_get("/metrics", ok)
    return app


async def _call(app: web.Application, requests: list[tuple[str, str, str | None]]) -> list[Any]:
    out = []
    async with TestClient(TestServer(app)) as client:
        for method, path, header in requests:
            headers = {} if header is None else {"Authorization": header}
            async with client.request(method, path, headers=headers) as resp:
                body = await resp.read()
                out.append((resp.status, dict(resp.headers), body))
    return out


@pytest.mark.parametrize(
    ("api", "method", "path", "header", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_middleware(
    api: ApiConfig,
    method: str,
    path: str,
    header: str | None,
    status: int,
    code: str | None,
) -> None:
    [(got, headers, body)] = asyncio.run(_call(_app(api), [(method, path, header)]))
    assert got == status, body
    if code is not None:
        error = orjson.loads(body)["error"]
        assert error["code"] == code
        assert error["message"]
        assert ADMIN not in error["message"] and READ not in error["message"]
    if status == 401:
        assert headers["WWW-Authenticate"].startswith('Bearer realm="raftcron"')
    else:
        assert "WWW-Authenticate" not in headers


@pytest.mark.parametrize(("case"), [c for c in CASES if c[3] != "HEAD"], ids=lambda c: c[0])
def test_decide_agrees_with_the_table(case: tuple[Any, ...]) -> None:
    _, api, method, path, header, status, code = case
    refusal = auth.Authorizer.from_config(api).decide(method, path, header)
    if code is None:
        assert refusal is None
    else:
        assert refusal is not None and (refusal.status, refusal.code) == (status, code)


def test_role_of_compares_every_token_and_hides_them() -> None:
    a = auth.Authorizer.from_config(SECURED)
    assert a.role_of(ADMIN) == "admin"
    assert a.role_of(READ) == "read"
    assert a.role_of(ADMIN + "x") is None
    assert a.role_of("") is None
    assert a.role_of("é-not-ascii") is None  # compare_digest on bytes: no TypeError
    assert ADMIN not in repr(a) and READ not in repr(a)
    assert auth.Authorizer.from_config(ApiConfig()).enforcing is False


def _config(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "cluster.toml"
    path.write_text(
        '[cluster]\nsecret = "0123456789abcdef-secret"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:7101"\napi = "127.0.0.1:8101"\n' + text
    )
    return load_config(path)


def test_register_puts_the_middleware_first(tmp_path: Path) -> None:
    cfg = _config(tmp_path, f'[[api.tokens]]\nrole = "read"\ntoken = "{READ}"\n')

    @web.middleware
    async def other(request: web.Request, handler: Any) -> web.StreamResponse:
        raise AssertionError("auth must run before any other middleware")

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application(middlewares=[other])
    app[NODE_KEY] = SimpleNamespace(name="a", config=cfg)  # type: ignore[assignment]
    app.router.add_get("/v1/jobs", ok)
    auth.register(app)
    assert len(app.middlewares) == 2
    [(status, _, _)] = asyncio.run(_call(app, [("GET", "/v1/jobs", None)]))
    assert status == 401


def test_register_needs_the_node() -> None:
    with pytest.raises(RuntimeError, match="NODE_KEY"):
        auth.register(web.Application())


# ------------------------------------------------------------------------------ TLS


def test_ssl_context(tmp_path: Path) -> None:
    assert auth.server_ssl_context(ApiConfig()) is None
    cert, key = self_signed(tmp_path)
    ctx = auth.server_ssl_context(ApiConfig(tls_cert=cert, tls_key=key))
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_ssl_context_refuses_bad_pem(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path / "one")
    _, other_key = self_signed(tmp_path / "two")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a pem\n")
    for c, k in [(junk, junk), (cert, other_key)]:
        with pytest.raises(ConfigError) as info:
            auth.server_ssl_context(ApiConfig(tls_cert=c, tls_key=k))
        [message] = info.value.errors
        assert message.startswith("api.tls_cert/api.tls_key: cannot load ")
        assert message.endswith("(give a PEM certificate and its unencrypted PEM private key)")


# ------------------------------------------------------------------------------ binding
# config.py refuses a non-loopback API without tokens (and without TLS) unless
# api.insecure = true; test_config.py has the both-missing case, these are the others.


@pytest.mark.parametrize(
    ("api", "extra", "problems"),
    [
        pytest.param("0.0.0.0:8101", "", ["api.tokens", "api.tls_cert"], id="wildcard"),
        pytest.param("db1.example:8101", "", ["api.tokens", "api.tls_cert"], id="hostname"),
        pytest.param(
            "10.0.0.5:8101",
            f'[[api.tokens]]\nrole = "admin"\ntoken = "{ADMIN}"\n',
            ["api.tls_cert"],
            id="tokens-without-tls",
        ),
        pytest.param("10.0.0.5:8101", "TLS", ["api.tokens"], id="tls-without-tokens"),
        pytest.param("10.0.0.5:8101", "[api]\ninsecure = true\n", [], id="insecure"),
        pytest.param(
            "10.0.0.5:8101",
            f'TLS[[api.tokens]]\nrole = "read"\ntoken = "{READ}"\n',
            [],
            id="tokens-and-tls",
        ),
        pytest.param("localhost:8101", "", [], id="localhost"),
        pytest.param("127.0.0.2:8101", "", [], id="loopback-net"),
    ],
)
def test_non_loopback_api_needs_tokens_and_tls(
    tmp_path: Path, api: str, extra: str, problems: list[str]
) -> None:
    if extra.startswith("TLS"):
        cert, key = self_signed(tmp_path)
        extra = f'[api]\ntls_cert = "{cert}"\ntls_key = "{key}"\n' + extra[3:]
    path = tmp_path / "cluster.toml"
    path.write_text(
        '[cluster]\nsecret = "0123456789abcdef-secret"\n'
        f'[cluster.nodes.a]\nraft = "127.0.0.1:7101"\napi = "{api}"\n' + extra
    )
    if not problems:
        load_config(path)
        return
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = [m.split(": ")[1] for m in info.value.errors]
    assert keys == problems
    for message in info.value.errors:
        assert "not loopback" in message and "api.insecure = true" in message
