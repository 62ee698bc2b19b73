"""The query cost estimate, on the gateway's real schema and without I/O: page sizes multiplied along each path."""

from __future__ import annotations

import inspect
from typing import Any

from graphql import get_introspection_query, parse

from bench.gateway import PARTNER_QUERY, VARIABLES
from gateway.cost import DEFAULT_PAGE_SIZE, operation_cost
from gateway.schema import create_schema
from gateway.types.common import page_size
from services.common.settings import Settings

SETTINGS = Settings(_env_file=None)
SCHEMA = create_schema(SETTINGS)


def cost(query: str, variables: dict[str, Any] | None = None, operation_name: str | None = None) -> int:
    return operation_cost(SCHEMA._schema, parse(query), variables, operation_name).total


def test_the_bench_partner_query_costs_its_actors_and_their_events_and_passes_the_default_limit() -> None:
    assert cost(PARTNER_QUERY, VARIABLES) == 20 + 20 * 3
    assert cost(PARTNER_QUERY, VARIABLES) <= SETTINGS.gateway_max_cost


def test_each_list_costs_its_page_times_the_pages_around_it() -> None:
    query = """{ needs(first: 10) { edges { node {
                   matches(first: 5) { actor { events(first: 2) { id } } } } } } }"""
    assert cost(query) == 10 + 10 * 5 + 10 * 5 * 2
    assert cost("{ needs(first: 10) { totalCount pageInfo { hasNextPage } } }") == 0, "no list asked for"


def test_without_first_a_list_costs_its_default() -> None:
    # Connections and lists without a default of their own: 20; Actor.events: its own default, 5.
    assert cost("{ actors { edges { node { events { id } } } } }") == 20 + 20 * 5
    assert cost('{ event(id: "e") { organizers { name events { id } } } }') == DEFAULT_PAGE_SIZE + 20 * 5
    assert cost('{ need(id: "n") { matches { reasons { code } } } }') == 20 + 20 * 20


def test_a_list_by_ids_costs_as_many_items_as_ids() -> None:
    ids = [f"m{i}" for i in range(60)]
    query = "query($ids: [ID!]!) { matches(ids: $ids) { actor { events(first: 10) { id } } } }"
    assert cost(query, {"ids": ids}) == 60 + 60 * 10
    assert cost('{ matches(ids: ["a", "b"]) { id } }') == 2


def test_first_is_read_from_the_variables_then_the_operations_default_then_the_fields() -> None:
    query = "query($n: Int, $e: Int! = 4) { actors(first: $n) { edges { node { events(first: $e) { id } } } } }"
    assert cost(query, {"n": 50, "e": 10}) == 50 + 50 * 10
    assert cost(query, {"n": 50}) == 50 + 50 * 4, "the operation's default for $e"
    assert cost(query, {}) == 20 + 20 * 4, "no $n: the connection's default page"
    assert cost(query, {"n": None}) == 20 + 20 * 4, "null: the field's default page, as the field reads it"
    assert cost(query, {"n": 30.0}) == 30 + 30 * 4, "an integral float is an Int"
    assert cost(query, {"n": -3, "e": 0}) == 1 + 1, "below 1 counts 1 (the field refuses it)"
    assert cost(query, {"n": "many"}) == 20 + 20 * 4, "not an Int: refused when the variables are read"


def test_fragments_and_inline_fragments_count_where_they_are_spread() -> None:
    inline = "{ actors(first: 30) { edges { node { events(first: 4) { id } } } } }"
    with_fragments = """
        query { actors(first: 30) { ...Page } }
        fragment Page on ActorConnection { edges { node { ...Next } } }
        fragment Next on Actor { ... on Actor { events(first: 4) { id } } }
    """
    assert cost(with_fragments) == cost(inline) == 30 + 30 * 4
    twice = "{ actors(first: 30) { edges { node { ...E ...E } } } } fragment E on Actor { events(first: 4) { id } }"
    assert cost(twice) == 30 + 2 * 30 * 4, "each spread is resolved, and counted"


def test_aliases_count_each_time_and_the_costliest_list_is_named() -> None:
    query = """{ a: actors(first: 10) { edges { node { id } } }
                 b: actors(first: 40) { edges { node { events(first: 10) { id } } } } }"""
    found = operation_cost(SCHEMA._schema, parse(query))
    assert found.total == 10 + 40 + 40 * 10
    assert (found.costliest, found.costliest_items) == ("b.edges.node.events", 400)


def test_introspection_costs_nothing_and_only_the_chosen_operation_counts() -> None:
    assert cost(get_introspection_query()) == 0, "GraphiQL's introspection query is never refused"
    document = "query Small { themes { code } } query Large { actors(first: 100) { edges { cursor } } }"
    assert cost(document, operation_name="Small") == 20
    assert cost(document, operation_name="Large") == 100
    assert cost(document) == 100, "no name among several: the costliest (execution refuses it anyway)"


def test_the_default_page_size_is_the_one_fields_use() -> None:
    assert inspect.signature(page_size).parameters["default"].default == DEFAULT_PAGE_SIZE


async def test_the_schema_refuses_a_costly_operation_before_running_it() -> None:
    # No context and no services: execution never starts, so no resolver can fail first.
    query = "query($n: Int) { actors(first: $n) { edges { node { matches(first: $n) { id } } } } }"
    result = await create_schema(SETTINGS.model_copy(update={"gateway_max_cost": 3000})).execute(query, {"n": 60})
    assert result.data is None and result.errors
    [refusal] = result.errors
    estimate = 60 + 60 * 60
    assert refusal.extensions == {
        "code": "BAD_USER_INPUT",
        "field": "actors.edges.node.matches",
        "rule": "cost",
        "limit": 3000,
        "cost": estimate,
    }
    assert f"{estimate} items, more than the limit of 3000" in refusal.message
