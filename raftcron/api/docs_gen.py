"""docs/api.md, generated from the OpenAPI document (:mod:`raftcron.api.openapi`).

``python -m raftcron.api.docs_gen`` writes ``docs/api.md``: every operation of
:data:`~raftcron.api.openapi.OPERATIONS` with its parameters, request body and responses,
then every schema with its fields. ``--check`` writes nothing and exits 1 when the file
differs from what the document gives (``tests/unit/test_api_docs.py`` runs it, so a change
to the API's description without the page fails the unit tests). The few paragraphs that
are not in the document (how writes, errors and limits work) are :data:`PREAMBLE`.

The document is built by :func:`raftcron.api.openapi.document` itself, on an application
with every described route registered, so the page shows what a node serves, links and
shared error responses included.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from raftcron.api.openapi import OPERATIONS, document

ROOT: Final = Path(__file__).resolve().parents[2]
TARGET: Final = ROOT / "docs" / "api.md"
_REF: Final = re.compile(r"^#/components/(schemas|responses)/(\w+)$")

PREAMBLE: Final = """\
Every member serves the whole API, on the `api` address of its `[cluster.nodes]` table;
the OpenAPI 3.1 document this page is generated from is served at `GET /v1/openapi.json`.
`raftcron.client.Client` (synchronous) and `AsyncClient` are its typed Python clients, and
the `raftcron` CLI ([cli.md](cli.md)) uses them. What the job operations do (trigger,
pause, kill, backfill) is in [jobs.md](jobs.md#triggers-pauses-kills-and-backfills); the
job keys of `PUT /v1/jobs/{name}` are the [job reference](jobs.md).

* **Writes go through the leader.** A write sent to a follower is carried out through the
  leader (the follower forwards it and answers once it has applied the entry, so a read on
  the same node sees it). A write that names a job or run the member has not applied yet
  (created through another member a moment ago) first commits a barrier, so it is found,
  not answered 404. Every write is safe to repeat.
* **Tokens.** Reads (`GET`) need a read or admin token, writes (`PUT`, `POST`, `DELETE`)
  an admin token, sent as `Authorization: Bearer <token>`; without tokens configured (an
  API on loopback) every client is admin. `/health`, `/health/leader` and `/metrics` are
  open while `api.open_health = true`. See [security.md](security.md#auth-and-tls).
* **Errors** are `{"error": {"code", "message"}}`, including the ones the HTTP layer
  answers before any handler: 400 `bad_request` for a request it cannot parse or a
  request line over 8190 bytes, 431 for header fields over 8190 bytes or more than 128 of
  them, 413 for a body over 1 MiB, 408 for a body that takes more than 30 s. 400 `invalid`
  (bad JSON, query parameter or job definition; an object key over 256 characters, a
  string over 64 KiB, nesting over 16 levels; an integer outside int64; a time outside
  1970-9999; a backfill `rate` outside 1/86400..100), 401/403 (tokens), 404
  `unknown_job`/`unknown_run`/`not_found`, 405 `method_not_allowed`, 409 a conflict
  (`config_job`: jobs of the config file are changed in the file, not through
  `PUT`/`DELETE`, though pausing them is fine; `embedded_job` the same for embedded
  Python jobs; `feature_not_enabled`: the request uses a job key or command that some
  member, still on an older release, does not support yet, named in the message with the
  members to upgrade: see [operations.md](operations.md#upgrade)), 503 `no_leader` or
  `timeout` with `Retry-After` (no quorum, or the write
  did not commit within 5 s: its outcome is unknown).
* **Connections.** A connection must send a complete request head within 20 s of
  connecting (and of its previous response), and each node keeps at most 512 connections
  open: a slow or idle client is closed, not held.
* **Also served**, outside `/v1`: `GET /health` (200 on a healthy member that sees a
  leader, else 503 with `status` `no_leader`, `failed` or `lagging` and a `reason`), `GET
  /health/leader` (200 only on the established leader), `GET /metrics` (Prometheus text,
  see [operations.md](operations.md#metrics)) and `GET /` (the dashboard)."""


def _slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _cell(text: str) -> str:
    """``text`` fit for one table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    return f"`{text}`"


def schema_text(schema: dict[str, Any]) -> str:
    """A schema in a few words: its type, with links to named schemas and its bounds."""
    if "$ref" in schema:
        m = _REF.match(schema["$ref"])
        name = m.group(2) if m else schema["$ref"]
        return f"[{name}](#{_slug(name)})"
    parts: list[str] = []
    for key in ("oneOf", "anyOf"):
        if key in schema:
            parts.append(" or ".join(schema_text(s) for s in schema[key]))
    if "allOf" in schema:
        parts.append(" and ".join(schema_text(s) for s in schema["allOf"]))
    if "const" in schema:
        parts.append(_code(schema["const"]))
    if "enum" in schema:
        parts.append(" | ".join(_code(v) for v in schema["enum"]))
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    for k in kinds:
        if k == "array":
            item = schema.get("items")
            parts.append(f"array of {schema_text(item)}" if item else "array")
        elif k == "object" and isinstance(schema.get("additionalProperties"), dict):
            parts.append(f"map of {schema_text(schema['additionalProperties'])}")
        elif k == "string" and "format" in schema:
            parts.append(f"string ({schema['format']})")
        else:
            parts.append(k)
    bounds = []
    for key, label in (
        ("minimum", ">="),
        ("maximum", "<="),
        ("minLength", "length >="),
        ("maxLength", "length <="),
        ("minItems", "items >="),
        ("maxItems", "items <="),
    ):
        if key in schema:
            bounds.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        bounds.append(f"matches `{schema['pattern']}`")
    if "default" in schema:
        bounds.append(f"default {_code(schema['default'])}")
    text = " or ".join(p for p in parts if p) or "any"
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _fields(schema: dict[str, Any]) -> list[str]:
    """The rows of a table of an object schema's properties."""
    required = set(schema.get("required", ()))
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        rows.append(
            f"| `{name}` | {_cell(schema_text(prop))} | {'yes' if name in required else ''} "
            f"| {_cell(prop.get('description', ''))} |"
        )
    return rows


def _operation(method: str, path: str, op: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    out = [f"### {method.upper()} {path}", "", op.get("summary", "").rstrip(".") + ".", ""]
    params = op.get("parameters", [])
    if params:
        out += ["| parameter | in | type | description |", "|---|---|---|---|"]
        for p in params:
            required = ", required" if p.get("required") and p["in"] != "path" else ""
            out.append(
                f"| `{p['name']}` | {p['in']}{required} | {_cell(schema_text(p['schema']))} "
                f"| {_cell(p.get('description', ''))} |"
            )
        out.append("")
    body = op.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        optional = "" if body.get("required") else " (optional)"
        out += [f"Request body{optional}: {schema_text(schema)}.", ""]
    out += ["| status | meaning | body |", "|---|---|---|"]
    for status, response in op["responses"].items():
        links = ", ".join(f"`{name}`" for name in response.get("links", {}))
        if "$ref" in response:
            m = _REF.match(response["$ref"])
            response = doc["components"]["responses"][m.group(2)] if m else response
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        meaning = response.get("description", "")
        if links:
            meaning += f" (links: {links})"
        body_text = schema_text(schema) if schema else ""
        out.append(f"| {status} | {_cell(meaning)} | {_cell(body_text)} |")
    return [*out, ""]


def full_document() -> dict[str, Any]:
    """The OpenAPI document with every described operation registered."""

    async def handler(request: web.Request) -> web.Response:  # never called
        raise NotImplementedError

    app = web.Application()
    for method, path in OPERATIONS:
        app.router.add_route(method, path, handler)
    return document(app)


def render(doc: dict[str, Any]) -> str:
    """docs/api.md for the OpenAPI document ``doc``."""
    out = [
        "# HTTP API",
        "",
        "<!-- Generated by `python -m raftcron.api.docs_gen` from raftcron/api/openapi.py: edit",
        "the document (or PREAMBLE in raftcron/api/docs_gen.py), then run it again;",
        "tests/unit/test_api_docs.py fails when this file is out of date. -->",
        "",
        PREAMBLE,
        "",
        "## Operations",
        "",
        "| operation | what it does |",
        "|---|---|",
    ]
    ops = [
        (method, path, op)
        for path, by_method in doc["paths"].items()
        for method, op in by_method.items()
    ]
    for method, path, op in ops:
        title = f"{method.upper()} {path}"
        out.append(f"| [`{title}`](#{_slug(title)}) | {_cell(op.get('summary', ''))} |")
    out.append("")
    for method, path, op in ops:
        out += _operation(method, path, op, doc)
    out += ["## Schemas", ""]
    for name, schema in doc["components"]["schemas"].items():
        out += [f"### {name}", ""]
        if schema.get("description"):
            out += [" ".join(schema["description"].split()), ""]
        if "properties" in schema:
            out += [*_fields(schema), ""]
        else:
            out += [f"{schema_text(schema)}.", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raftcron.api.docs_gen",
        description="write docs/api.md from the OpenAPI document",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is stale")
    parser.add_argument("--out", type=Path, default=TARGET, help="the file (docs/api.md)")
    args = parser.parse_args(argv)
    text = render(full_document())
    current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
    if args.check:
        if current != text:
            sys.stderr.write(f"{args.out}: out of date (run python -m raftcron.api.docs_gen)\n")
            return 1
        return 0
    if current != text:
        args.out.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
