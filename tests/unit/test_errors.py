"""One error vocabulary: the contract's codes are the only ones written, the same in the services' problem bodies and
the gateway's errors, and the stale-version conflict and the ETag are each built once."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from graphql import GraphQLError

from gateway.errors import PublicErrors, from_error, from_response
from services.common.errors import Conflict, NotFound, Unavailable, install_error_handlers, problem_response
from services.common.versions import etag, parse_if_match, stale_version
from services.contracts.errors import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "services" / "contracts" / "errors.py"


def sources() -> list[Path]:
    return sorted(p for tree in ("services", "gateway") for p in (ROOT / tree).rglob("*.py") if p != CONTRACT)


def test_no_module_writes_a_code_as_a_string_literal() -> None:
    written = {code.value for code in ErrorCode} | {"INTERNAL"}
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.value}"
        for path in sources()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in written
    ]
    assert found == [], "use services.contracts.errors.ErrorCode"


def test_the_contract_stands_below_common() -> None:
    imported = [
        node.module or ""
        for node in ast.walk(ast.parse(CONTRACT.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
    ]
    assert not [name for name in imported if name.startswith(("services.common", "gateway"))]


def test_the_codes_are_their_own_names_in_json() -> None:
    assert all(code.value == code.name for code in ErrorCode)
    assert httpx.Response(200, json={"code": ErrorCode.NOT_FOUND}).json() == {"code": "NOT_FOUND"}


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, ErrorCode.BAD_USER_INPUT),
        (401, ErrorCode.UNAUTHENTICATED),
        (403, ErrorCode.FORBIDDEN),
        (404, ErrorCode.NOT_FOUND),
        (405, ErrorCode.BAD_USER_INPUT),
        (409, ErrorCode.CONFLICT),
        (412, ErrorCode.CONFLICT),
        (413, ErrorCode.BAD_USER_INPUT),
        (422, ErrorCode.BAD_USER_INPUT),
        (428, ErrorCode.BAD_USER_INPUT),
        (429, ErrorCode.RATE_LIMITED),
        (500, ErrorCode.INTERNAL_SERVER_ERROR),
        (503, ErrorCode.UNAVAILABLE),
    ],
)
def test_a_status_without_a_code_of_its_own_gets_one(status: int, code: ErrorCode) -> None:
    assert ErrorCode.for_status(status) is code


def service_app() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def _boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/proxied")
    async def _proxied() -> object:
        return problem_response(Unavailable("the events service is unavailable"), "/proxied", {"Retry-After": "5"})

    return TestClient(app, raise_server_exceptions=False)


def test_an_unexpected_error_is_internal_server_error_in_a_service_as_in_the_gateway() -> None:
    with service_app() as http:
        answer = http.get("/boom")
    assert answer.status_code == 500 and answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "INTERNAL_SERVER_ERROR" and "a bug" not in answer.text
    masked = PublicErrors().anonymise_error(GraphQLError("a bug", original_error=RuntimeError("a bug")))
    assert masked.extensions == {"code": answer.json()["code"]}


def test_a_route_answering_an_error_itself_answers_the_problem_body() -> None:
    with service_app() as http:
        answer = http.get("/proxied")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json() == {
        "type": "https://maillage.org/problems/unavailable",
        "title": "Temporarily unavailable",
        "status": 503,
        "detail": "the events service is unavailable",
        "code": "UNAVAILABLE",
        "instance": "/proxied",
    }


def test_the_gateway_keeps_a_services_code_and_falls_back_on_the_status() -> None:
    coded = from_response("directory", httpx.Response(409, json=NotFound("no actor x").problem()))
    assert coded.extensions == {"code": "NOT_FOUND"}, "the body's code wins over the status"
    uncoded = from_response("directory", httpx.Response(429, json={"code": "SLOW_DOWN", "detail": "later"}))
    assert uncoded.extensions == {"code": "RATE_LIMITED"} and uncoded.message == "later"


def test_a_stale_version_is_one_conflict_over_http_and_over_graphql() -> None:
    conflict = stale_version("actor", "a1", 2, 3)
    assert isinstance(conflict, Conflict)
    assert conflict.problem()["errors"] == [{"field": "If-Match", "rule": "stale", "message": conflict.detail}]
    assert conflict.problem()["current_version"] == 3 and conflict.problem()["code"] == "CONFLICT"
    assert "version 3, not 2" in conflict.detail
    graphql = from_error(stale_version("actor", "a1", 2, 3, field="version"))
    assert graphql.message == conflict.detail
    assert graphql.extensions == {"code": "CONFLICT", "field": "version", "rule": "stale"}


def test_an_etag_is_the_version_if_match_reads_back() -> None:
    assert etag(7) == '"7"'
    assert parse_if_match(etag(7), "actor", "/v1/actors/{id}") == 7
    assert parse_if_match("W/" + etag(7), "actor", "/v1/actors/{id}") == 7
