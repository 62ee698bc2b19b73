"""What every domain's types share: Relay connections, places, themes, input helpers (context: gateway/context.py)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types.unset import UnsetType

from gateway.context import GInfo
from gateway.errors import bad_input
from services.contracts import territories


def page_size(info: GInfo, first: int | None, default: int = 20) -> int:
    limit = info.context.gateway.settings.gateway_max_page_size
    size = default if first is None else first
    if not 1 <= size <= limit:
        raise bad_input(f"first: between 1 and {limit}", field="first", rule="max_page_size")
    return size


def body_of(value: Any) -> Any:
    """An input object as the services' JSON: snake_case keys, unset and null fields left out (service defaults)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: body_of(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None and not isinstance(getattr(value, f.name), UnsetType)
        }
    if isinstance(value, list):
        return [body_of(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def patch_of(value: Any) -> dict[str, Any]:
    """An update input as a PATCH body: the fields given, an explicit null kept (it removes the field's value, or
    the service refuses it for a required field), the fields not given (unset) left out. Nested inputs are
    replaced whole, so a null inside one is left out as in `body_of` (the service's default)."""
    return {
        f.name: body_of(getattr(value, f.name))
        for f in dataclasses.fields(value)
        if not isinstance(getattr(value, f.name), UnsetType)
    }


# --- Relay connections ------------------------------------------------------------------------------------

NodeT = TypeVar("NodeT")


@strawberry.type(description="Where a page ends and whether another follows")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo
    total_count: int | None = strawberry.field(description="Asked for: computed only when selected")


def connection_of(
    pairs: Iterable[tuple[str, dict[str, Any]]],
    *,
    has_next: bool,
    end_cursor: str | None,
    total: int | None,
    loader: DataLoader[str, dict[str, Any] | None],
    of: Callable[[dict[str, Any]], NodeT],
) -> Connection[NodeT]:
    """A page of (cursor, node) from a service as a connection; each node primes this request's loader."""
    edges = []
    for cursor, node in pairs:
        loader.prime(node["id"], node)
        edges.append(Edge(cursor=cursor, node=of(node)))
    return Connection(edges=edges, page_info=PageInfo(has_next_page=has_next, end_cursor=end_cursor), total_count=total)


def relay_page(
    page: dict[str, Any], loader: DataLoader[str, dict[str, Any] | None], of: Callable[[dict[str, Any]], NodeT]
) -> Connection[NodeT]:
    """A service's Relay-shaped page (`edges`, `page_info`, `total_count`) as a connection."""
    return connection_of(
        ((edge["cursor"], edge["node"]) for edge in page["edges"]),
        has_next=page["page_info"]["has_next_page"],
        end_cursor=page["page_info"]["end_cursor"],
        total=page["total_count"],
        loader=loader,
        of=of,
    )


def wants_total(info: GInfo) -> bool:
    """Whether the query selected `totalCount` (counting costs a second query, so only then)."""
    return any(getattr(selection, "name", None) == "totalCount" for selection in info.selected_fields[0].selections)


# --- places and vocabularies --------------------------------------------------------------------------------


@strawberry.enum(description="The kinds of INSEE territory")
class TerritoryKind(enum.Enum):
    COM = "COM"
    EPCI = "EPCI"
    DEP = "DEP"
    REG = "REG"


@strawberry.type(description="An INSEE territory by name: a commune, an EPCI, a département or a région")
class Territory:
    code: str = strawberry.field(description="Its code as perimeters and filters take it: COM-25056, EPCI-<siren>…")
    kind: TerritoryKind
    name: str
    population: int = strawberry.field(description="Its communes' (INSEE's legal population)")

    @staticmethod
    def of(found: territories.Territory) -> Territory:
        return Territory(code=found.code, kind=TerritoryKind(found.kind), name=found.name, population=found.population)

    @staticmethod
    def named(codes: Iterable[str]) -> list[Territory]:
        """The territories of perimeter codes, with their names (a code the INSEE data does not know is left out:
        the services refuse those, so only a retired code could be one)."""
        found = (territories.territory_named(code) for code in codes)
        return [Territory.of(territory) for territory in found if territory is not None]


@strawberry.type(description="WGS 84 coordinates")
class GeoPoint:
    lat: float
    lon: float

    @staticmethod
    def of(data: dict[str, Any] | None) -> GeoPoint | None:
        return GeoPoint(lat=data["lat"], lon=data["lon"]) if data else None


@strawberry.input(description="WGS 84 coordinates")
class GeoPointInput:
    lat: float
    lon: float


@strawberry.input(description="A circle: things within radiusKm of the point")
class NearInput:
    lat: float
    lon: float
    radius_km: float


@strawberry.type(description="A theme of the controlled vocabulary (stable code, French label)")
class Theme:
    code: str
    label: str


@strawberry.enum(description="Where a match stands (values: the matching service's codes, as `Match.status`)")
class MatchStatus(enum.Enum):
    PROPOSED = "proposed"
    NOTIFIED = "notified"
    VIEWED = "viewed"
    INTERESTED = "interested"
    DECLINED = "declined"
    SELECTED = "selected"
    WITHDRAWN = "withdrawn"


def status_codes(statuses: list[MatchStatus] | None) -> tuple[str, ...] | None:
    """A `statuses` argument as the service's codes (a hashable loader key); None for all, refused when empty."""
    if statuses is None:
        return None
    if not statuses:
        raise bad_input("statuses: give at least one status, or leave it out for all", "statuses", "not_empty")
    return tuple(sorted({status.value for status in statuses}))


@strawberry.type(name="Principal", description="The authenticated caller")
class PrincipalType:
    subject: str
    role: str
    actor_id: strawberry.ID | None
    scopes: list[str]
