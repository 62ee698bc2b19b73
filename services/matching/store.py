"""SQL of the matching service: the actor replica, needs, candidate actors ranked in SQL, and matches."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import asyncpg
import orjson

from services.contracts import territories
from services.contracts.events import ActorV1
from services.matching.model import PENDING_MATCH, MatchRead, NeedCreate, NeedRead, NeedUpdate
from services.matching.scoring import Activity, ActorProfile, NeedProfile, Weights, qpv_prefix

logger = logging.getLogger("maillage.matching")

# --- actor replica ------------------------------------------------------------------------------


async def upsert_actor(conn: asyncpg.Connection, actor: ActorV1) -> bool:
    """Apply an actor's state if it is newer than the replica's; True when applied."""
    themes = list(dict.fromkeys([*actor.themes, *(a.theme for a in actor.activities)]))
    service_types = list(dict.fromkeys([*actor.service_types, *(a.service_type for a in actor.activities)]))
    reach = sorted({code for a in actor.activities if a.area.kind == "territories" for code in a.area.territories})
    radii = [a.area.radius_km or 0.0 for a in actor.activities if a.area.kind == "radius"]
    national = any(a.area.kind == "national" for a in actor.activities)
    applied = await conn.fetchval(
        """
        INSERT INTO actors (id, version, name, kind, themes, service_types, commune_code, territories, reach,
                            reach_radius_km, national, lat, lon, qpv_code, legal_form, status, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        ON CONFLICT (id) DO UPDATE SET
            version = EXCLUDED.version, name = EXCLUDED.name, kind = EXCLUDED.kind, themes = EXCLUDED.themes,
            service_types = EXCLUDED.service_types, commune_code = EXCLUDED.commune_code,
            territories = EXCLUDED.territories, reach = EXCLUDED.reach,
            reach_radius_km = EXCLUDED.reach_radius_km, national = EXCLUDED.national, lat = EXCLUDED.lat,
            lon = EXCLUDED.lon, qpv_code = EXCLUDED.qpv_code, legal_form = EXCLUDED.legal_form,
            status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
        WHERE actors.version < EXCLUDED.version
        RETURNING true
        """,
        uuid.UUID(actor.id),
        actor.version,
        actor.name,
        actor.kind,
        themes,
        service_types,
        actor.commune_code,
        list(actor.territories) or list(territories.territories_of_commune(actor.commune_code)),
        reach,
        max(radii, default=0.0),
        national,
        actor.location.lat if actor.location else None,
        actor.location.lon if actor.location else None,
        actor.qpv_code,
        actor.legal_form,
        actor.status,
        datetime.fromisoformat(actor.updated_at),
    )
    if not applied:
        return False
    await conn.execute(
        """
        INSERT INTO actor_texts (id, name, description, activities) VALUES ($1, $2, $3, $4)
        ON CONFLICT (id) DO UPDATE SET
            name = EXCLUDED.name, description = EXCLUDED.description, activities = EXCLUDED.activities
        """,
        uuid.UUID(actor.id),
        actor.name,
        actor.description,
        [a.model_dump(mode="json") for a in actor.activities],
    )
    return True


def actor_profile(row: asyncpg.Record, text_relevance: float = 0.0) -> ActorProfile:
    return ActorProfile(
        id=str(row["id"]),
        name=row["name"],
        kind=row["kind"],
        themes=frozenset(row["themes"]),
        service_types=frozenset(row["service_types"]),
        territories=frozenset(row["territories"]),
        lat=row["lat"],
        lon=row["lon"],
        qpv_code=row["qpv_code"],
        activities=tuple(Activity.from_json(a) for a in row["activities"]),
        text_relevance=text_relevance,
    )


# --- needs ------------------------------------------------------------------------------------------

NEED_COLUMNS = """id, version, owner_id, title, description, kind, themes, service_types, commune_code,
    lat, lon, perimeter, perimeter_radius_km, eligible_kinds, budget_min, budget_max, deadline, qpv_priority,
    status, closing_comment, created_at, updated_at"""


def authority_territory(legal_form: str | None, actor_territories: Sequence[str]) -> list[str]:
    """The territory a local authority governs, from its legal form (commune by default)."""
    form = (legal_form or "").lower()
    prefix = "COM-"
    if "région" in form or "region" in form:
        prefix = "REG-"
    elif "département" in form or "departement" in form or "collectivité européenne" in form:
        prefix = "DEP-"
    elif any(word in form for word in ("epci", "métropole", "metropole", "communauté", "communaute")):
        prefix = "EPCI-"
    return [code for code in actor_territories if code.startswith(prefix)][:1]


def effective_perimeter(row: asyncpg.Record, owner: asyncpg.Record | None) -> list[str]:
    if row["perimeter"] or row["perimeter_radius_km"]:
        return list(row["perimeter"])
    if owner is None:
        return [f"COM-{row['commune_code']}"]
    return authority_territory(owner["legal_form"], owner["territories"]) or [f"COM-{owner['commune_code']}"]


async def owner_of(conn: asyncpg.Connection | asyncpg.Pool, owner_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, kind, legal_form, territories, commune_code, name, status FROM actors WHERE id = $1", owner_id
    )


async def owners_of(conn: asyncpg.Connection | asyncpg.Pool, owner_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT id, kind, legal_form, territories, commune_code, name, status FROM actors
               WHERE id = ANY($1::uuid[])""",
            owner_ids,
        )
    )


def need_read(row: asyncpg.Record, owner: asyncpg.Record | None) -> NeedRead:
    return NeedRead(
        id=str(row["id"]),
        version=row["version"],
        owner_id=str(row["owner_id"]),
        title=row["title"],
        description=row["description"],
        kind=row["kind"],
        themes=list(row["themes"]),
        service_types=list(row["service_types"]),
        commune_code=row["commune_code"],
        location={"lat": row["lat"], "lon": row["lon"]},
        perimeter={"territories": list(row["perimeter"]), "radius_km": row["perimeter_radius_km"]},
        effective_perimeter=effective_perimeter(row, owner),
        eligible_kinds=list(row["eligible_kinds"]),
        budget_min=float(row["budget_min"]) if row["budget_min"] is not None else None,
        budget_max=float(row["budget_max"]) if row["budget_max"] is not None else None,
        deadline=row["deadline"],
        qpv_priority=row["qpv_priority"],
        status=row["status"],
        closing_comment=row["closing_comment"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def need_profile(need: NeedRead) -> NeedProfile:
    return NeedProfile(
        id=need.id,
        owner_id=need.owner_id,
        themes=frozenset(need.themes),
        service_types=frozenset(need.service_types),
        place_codes=frozenset(territories.territories_of_commune(need.commune_code)),
        lat=need.location.lat,
        lon=need.location.lon,
        perimeter=frozenset(need.effective_perimeter),
        perimeter_radius_km=need.perimeter.radius_km,
        eligible_kinds=frozenset(need.eligible_kinds),
        qpv_priority=need.qpv_priority,
        qpv_prefix=qpv_prefix(territories.resolve_commune(need.commune_code).departement),
    )


def _need_values(body: NeedCreate | NeedUpdate) -> list[Any]:
    return [
        body.title,
        body.description,
        body.kind.value,
        body.themes,
        body.service_types,
        body.commune_code,
        body.location.lat,
        body.location.lon,
        body.perimeter.territories,
        body.perimeter.radius_km,
        body.eligible_kinds,
        body.budget_min,
        body.budget_max,
        body.deadline,
        body.qpv_priority,
    ]


async def insert_need(conn: asyncpg.Connection, owner_id: uuid.UUID, body: NeedCreate) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        INSERT INTO needs (id, owner_id, title, description, kind, themes, service_types, commune_code,
                           lat, lon, perimeter, perimeter_radius_km, eligible_kinds, budget_min, budget_max,
                           deadline, qpv_priority)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        RETURNING {NEED_COLUMNS}
        """,
        uuid.uuid4(),
        owner_id,
        *_need_values(body),
    )
    return row


async def update_need(
    conn: asyncpg.Connection, need_id: uuid.UUID, body: NeedUpdate, expected_version: int
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""
        UPDATE needs SET title = $3, description = $4, kind = $5, themes = $6, service_types = $7,
            commune_code = $8, lat = $9, lon = $10, perimeter = $11, perimeter_radius_km = $12,
            eligible_kinds = $13, budget_min = $14, budget_max = $15, deadline = $16, qpv_priority = $17,
            version = version + 1, updated_at = now()
        WHERE id = $1 AND version = $2 AND status = 'published'
        RETURNING {NEED_COLUMNS}
        """,
        need_id,
        expected_version,
        *_need_values(body),
    )
    return row


async def get_needs(conn: asyncpg.Connection | asyncpg.Pool, need_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return list(await conn.fetch(f"SELECT {NEED_COLUMNS} FROM needs WHERE id = ANY($1::uuid[])", need_ids))


async def get_need(
    conn: asyncpg.Connection | asyncpg.Pool, need_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(f"SELECT {NEED_COLUMNS} FROM needs WHERE id = $1{lock}", need_id)
    return row


async def set_need_status(
    conn: asyncpg.Connection, need_id: uuid.UUID, status: str, comment: str | None
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        UPDATE needs SET status = $2, closing_comment = $3, version = version + 1, updated_at = now()
        WHERE id = $1 RETURNING {NEED_COLUMNS}
        """,
        need_id,
        status,
        comment,
    )
    return row


async def expired_needs(conn: asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT {NEED_COLUMNS} FROM needs WHERE status = 'published' AND deadline <= now()
                ORDER BY deadline LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
    )


async def list_needs(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    owner_id: uuid.UUID | None,
    statuses: list[str] | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""
            SELECT {NEED_COLUMNS} FROM needs
            WHERE ($1::uuid IS NULL OR owner_id = $1) AND ($2::text[] IS NULL OR status = ANY($2))
              AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $5
            """,
            owner_id,
            statuses,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    )


# --- candidates, ranked and capped in SQL ------------------------------------------------------------

# An OR query of the need's French lexemes, so that any shared word counts.
NEED_QUERY = """(SELECT to_tsquery('simple', coalesce(string_agg(quote_literal(l), ' | '), ''))
   FROM (SELECT l FROM unnest(tsvector_to_array(to_tsvector('fr_unaccent', {text}))) AS l
         WHERE length(l) > 2 LIMIT 40) AS lexemes)"""
RERANK_FACTOR = 4  # the structured rank keeps this many times `limit` actors; text relevance reorders them


def _overlap(param: str, count: int, column: str) -> str:
    """How many of the need's codes ($param, `count` of them) the actor's `column` holds, as SQL."""
    return " + ".join(f"(({param}::text[])[{i}] = ANY({column}))::int" for i in range(1, count + 1)) or "0"


EARTH_RADIUS_KM = 6371.0


class Shares(NamedTuple):
    """The weights as shares of the need's whole score (QPV counts only when the need asks for it)."""

    themes: float
    service_types: float
    distance: float
    text: float
    qpv: float

    @classmethod
    def of(cls, weights: Weights, need: NeedRead) -> Shares:
        qpv = weights.qpv if need.qpv_priority else 0.0
        total = (weights.themes + weights.service_types + weights.distance + weights.text + qpv) or 1.0
        return cls(*(w / total for w in (weights.themes, weights.service_types, weights.distance, weights.text, qpv)))


def _rank_sql(weights: Weights, need: NeedRead) -> tuple[str, list[float]]:
    """The score of scoring.evaluate in SQL without its text part (added on the short list); $13-$17 and $19.

    Distance here only preselects candidates (Python scores the short list exactly), so it is the
    equirectangular approximation — arithmetic on the row's coordinates, with the cosine of the need's
    latitude passed once as $19 — instead of earth_distance(ll_to_earth(…)), whose trigonometry per row was
    40 % of the query over tens of thousands of candidates (bench/matching.py). Within 100 km it differs from
    the great-circle distance by well under 1 %; farther away the closeness term is nil either way.
    """
    share = Shares.of(weights, need)
    themes = f"({_overlap('$2', len(need.themes), 'c.themes')})::float8 / {max(len(need.themes), 1)}"
    services = (
        f"({_overlap('$3', len(need.service_types), 'c.service_types')})::float8 / {len(need.service_types)}"
        if need.service_types
        else "1.0"
    )
    sql = f"""(
        $13 * {themes}
      + $14 * {services}
      + $15 * CASE WHEN c.lat IS NULL THEN 0.0
                   ELSE exp(-{EARTH_RADIUS_KM} * sqrt(radians(c.lat - $5) ^ 2 + ($19 * radians(c.lon - $6)) ^ 2)
                            / $17) END
      + $16 * CASE WHEN $11 AND c.qpv_code LIKE $18 THEN 1.0 ELSE 0.0 END
    )"""
    return sql, [share.themes, share.service_types, share.distance, share.qpv, weights.distance_scale_km]


NEAR_KM = 5.0  # the first probe reads every eligible actor this close; its ranking bounds the others
# Wider discs of actors with the need's service types read grid cells: the GiST would walk every actor of the area
# for the few with the right codes; narrower ones, or without a service condition, are faster on the GiST.
CELLS_KM = 15.0
FAR_KM = 150.0  # beyond it a group is probed everywhere (and the flat-earth distance of _rank_sql drifts)
EPSILON = 1e-9  # slack on score bounds, so that rounding never drops an actor that ties the threshold
COLUMNS = "a.id, a.kind, a.themes, a.service_types, a.lat, a.lon, a.qpv_code"
# The geographic rules, as a condition on one replica row `a`. The need's place is a scalar subquery (computed
# once per probe) rather than a joined CTE, so that the planner always puts it in the place indexes' conditions.
PLACE = "(SELECT ll_to_earth($5, $6))"
# A disc probe's radius ($12 km), inflated so that its box (flat, or cells) holds the whole spherical disc.
DISC_KM = "($12 * 1.03 + 0.5)"
ELIGIBLE_PLACE = f"""(a.territories && $7
    OR ($8 > 0 AND earth_box({PLACE}, $8 * 1000) @> ll_to_earth(a.lat, a.lon)
        AND earth_distance({PLACE}, ll_to_earth(a.lat, a.lon)) <= $8 * 1000)
    OR (a.reach <> '{{}}' AND a.reach && $9)
    OR (a.reach_radius_km > 0 AND earth_box(ll_to_earth(a.lat, a.lon), a.reach_radius_km * 1000) @> {PLACE})
    OR a.national)"""


class Level(NamedTuple):
    """One overlap level of themes ($2) or service types ($3), as SQL on the replica row `a`."""

    codes: str  # the condition on the codes themselves
    keys: str | None  # the same on the GiST keys, when an index can use it
    cells: str  # the codes whose grid-cell keys a disc probe looks up (one of them when all are needed)


KEYS = "match_keys(a.themes, a.service_types)"
THEME_LEVELS = {
    "all": Level("a.themes @> $2", f"{KEYS} @> match_keys($2, '{{}}'::text[])", "($2::text[])[1:1]"),
    "some": Level("a.themes && $2 AND NOT a.themes @> $2", f"{KEYS} && match_keys($2, '{{}}'::text[])", "$2::text[]"),
    "any": Level("a.themes && $2", f"{KEYS} && match_keys($2, '{{}}'::text[])", "$2::text[]"),
}
SERVICE_LEVELS = {
    "all": Level(
        "a.service_types @> $3", f"{KEYS} @> match_keys('{{}}'::text[], $3)", "coalesce(($3::text[])[1], '*')"
    ),
    "rest": Level("NOT a.service_types @> $3", None, "'*'"),
    "any": Level("true", None, "'*'"),
}
# An actor's grid-cell keys (migration 0006), compared with the anyarray operator that its GIN index serves
# (intarray's && on integer[] would not use it).
PLACE_KEYS = "place_keys(a.themes, a.service_types, a.lat, a.lon) OPERATOR(pg_catalog.&&)"
# What the replica rows of a disc probe carry: the ranked columns and the geographic rules' columns.
DISC_COLUMNS = f"{COLUMNS}, a.territories, a.reach, a.reach_radius_km, a.national"


@dataclass(frozen=True)
class Group:
    """Actors at one level of theme and service-type overlap, and the best structured score they can reach.

    themes: "all" the need's themes, "some" but not all, or "any"; services: "all" the need's service
    types, the "rest", or "any". The levels' conditions apply to the codes and, where an index can use
    them, to the keys of the place GiST indexes or of the grid cells.
    """

    themes: str
    services: str
    best: float  # the structured score of a member at distance 0

    def conditions(self) -> tuple[str, str]:
        """(on the codes, on the codes and the GiST keys) as SQL on the row `a`."""
        levels = (THEME_LEVELS[self.themes], SERVICE_LEVELS[self.services])
        exact = [level.codes for level in levels]
        return " AND ".join(exact), " AND ".join([*(level.keys for level in levels if level.keys), *exact])

    def disc_keys(self, radius: str) -> str:
        """The place keys of the group's members within `radius` km (SQL) of the need, as SQL."""
        return f"disc_keys({THEME_LEVELS[self.themes].cells}, {SERVICE_LEVELS[self.services].cells}, $5, $6, {radius})"


ANY_THEME = Group("any", "any", math.inf)


def _groups(need: NeedRead, weights: Weights) -> list[Group]:
    """The overlap levels of the need's candidates, best first (each bound counts the QPV bonus when asked)."""
    share = Shares.of(weights, need)
    themes = {"all": share.themes}
    if len(need.themes) > 1:  # one theme short at best
        themes["some"] = share.themes * (len(need.themes) - 1) / len(need.themes)
    count = len(need.service_types)
    services = {"all": share.service_types, "rest": share.service_types * (count - 1) / count} if count else {}
    services = services or {"any": share.service_types}  # no service type asked: the term is whole for all
    groups = [Group(t, s, tb + sb + share.qpv) for t, tb in themes.items() for s, sb in services.items()]
    return sorted(groups, key=lambda group: -group.best)


def reach_km(best: float, threshold: float, closeness: float, scale_km: float) -> float:
    """How far from the need a member of a group whose score at distance 0 is `best` can still reach `threshold`.

    `closeness` is the distance share of the score, which decays as exp(-km / scale_km). 0 or less: nowhere;
    infinite: anywhere (its score without closeness already reaches the threshold).
    """
    missing = threshold - EPSILON - best  # what closeness must add
    if missing <= 0:
        return math.inf
    if missing >= closeness:
        return -1.0
    return scale_km * math.log(closeness / missing)


def _stage_sql(rank: str, group: Group, *, disc: bool, cells: bool = False, plain: bool = False) -> str:
    """One probe: the group's eligible actors, within $12 km of the need or anywhere, best `keep` first.

    `cells`: a disc probe reads the grid-cell GIN instead of the place GiST. `plain`: the rules as a filter
    on every actor, without any index path (the exhaustive reference).
    """
    themes, keyed = group.conditions()
    if plain:
        source = f"SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND {themes} AND {ELIGIBLE_PLACE}"
    elif disc and cells:
        # One GIN probe of the grid cells the disc touches; the fence (OFFSET 0)
        # keeps the geographic rules out of the scan, whose index paths would read every actor of the area.
        source = f"""SELECT {COLUMNS} FROM (
                SELECT {DISC_COLUMNS} FROM actors a
                WHERE a.status = 'active' AND {PLACE_KEYS} {group.disc_keys(DISC_KM)} OFFSET 0
            ) a WHERE {themes} AND {ELIGIBLE_PLACE}"""
    elif disc:
        # One GiST probe on (place, keys).
        source = f"""SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.lat IS NOT NULL
               AND ll_to_earth(a.lat, a.lon) <@ earth_box({PLACE}, {DISC_KM} * 1000)
               AND {keyed} AND {ELIGIBLE_PLACE}"""
    else:
        # Each geographic rule is one index probe; an actor that several rules admit is kept once below (by
        # id alone: UNION would sort every row on all its columns, arrays included).
        source = f"""
            SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.territories && $7 AND {themes}
            UNION ALL
            SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.lat IS NOT NULL AND $8 > 0
               AND earth_box({PLACE}, $8 * 1000) @> ll_to_earth(a.lat, a.lon)
               AND earth_distance({PLACE}, ll_to_earth(a.lat, a.lon)) <= $8 * 1000 AND {keyed}
            UNION ALL
            SELECT {COLUMNS} FROM actors a
             WHERE a.status = 'active' AND a.reach <> '{{}}' AND a.reach && $9 AND {themes}
            UNION ALL
            SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.reach_radius_km > 0
               AND a.lat IS NOT NULL AND {keyed}
               AND earth_box(ll_to_earth(a.lat, a.lon), a.reach_radius_km * 1000) @> {PLACE}
            UNION ALL
            SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.national AND {themes}"""
    several = not (disc or plain)  # the sources may admit an actor twice: keep it once
    ranked = f"""SELECT {"DISTINCT ON (c.id)" if several else ""} c.id, {rank} AS structured
        FROM cand c
        WHERE c.id <> $1 AND (CASE WHEN cardinality($4::text[]) = 0 THEN c.kind <> 'local_authority'
                                   ELSE c.kind = ANY($4) END)"""
    if several:
        ranked = f"SELECT id, structured FROM ({ranked} ORDER BY c.id) AS kept"
    return f"""
        WITH types AS (  -- types the parameters that a probe may leave unused (it is never read)
            SELECT $3::text[] AS service_types, $12::float8 AS radius_km
        ), cand AS ({source})
        {ranked}
        ORDER BY structured DESC, id
        LIMIT $10
        """


@dataclass(frozen=True)
class Probe:
    """One query of a short list: which group, how far (infinite: anywhere), how many actors it kept."""

    group: Group
    radius_km: float
    kept: int


async def short_list(
    conn: asyncpg.Connection | asyncpg.Pool, need: NeedRead, weights: Weights, keep: int, *, prune: bool = True
) -> tuple[list[tuple[uuid.UUID, float]], list[Probe]]:
    """The `keep` eligible actors of best structured score (themes, service types, distance, QPV), best first.

    Around a city tens of thousands of actors are eligible, so the list is built in probes (`prune`):
    first every eligible actor within NEAR_KM, whose ranking gives a threshold; then each overlap group
    (`_groups`) only as far as its members can still reach the threshold — anywhere when their score
    without closeness reaches it, within a disc otherwise, not at all when even distance 0 falls short.
    The threshold only rises and each probe keeps its own best `keep`, so no actor of the exact list is
    left out (tests/integration/test_matching_pruning.py compares with `prune=False`: the rules as one
    filter on every actor, without the index paths).
    """
    rank, rank_params = _rank_sql(weights, need)
    params = [
        uuid.UUID(need.owner_id),
        need.themes,
        need.service_types,
        need.eligible_kinds,
        need.location.lat,
        need.location.lon,
        need.effective_perimeter,
        need.perimeter.radius_km or 0.0,
        list(territories.territories_of_commune(need.commune_code)),
        keep,
        need.qpv_priority,
        math.inf,  # $12: the probe's radius in km
        *rank_params,
        qpv_prefix(territories.resolve_commune(need.commune_code).departement) + "%",
        math.cos(math.radians(need.location.lat)),
    ]
    found: dict[uuid.UUID, float] = {}
    probes: list[Probe] = []

    def threshold() -> float:
        """The `keep`-th best score found so far: no actor below it can enter the list."""
        scores = sorted(found.values(), reverse=True)
        return scores[keep - 1] if len(scores) >= keep else -math.inf

    closeness = Shares.of(weights, need).distance

    def reach(best: float) -> float:
        return reach_km(best, threshold(), closeness, weights.distance_scale_km)

    async def probe(group: Group, radius_km: float) -> None:
        params[11] = radius_km
        disc = math.isfinite(radius_km)
        cells = disc and radius_km > CELLS_KM and group.services == "all"
        rows = await conn.fetch(_stage_sql(rank, group, disc=disc, cells=cells, plain=not prune), *params)
        found.update((row["id"], row["structured"]) for row in rows)
        probes.append(Probe(group, radius_km, len(rows)))

    if not prune:
        await probe(ANY_THEME, math.inf)
    else:
        await probe(ANY_THEME, NEAR_KM)
        groups = _groups(need, weights)
        while groups:
            group = groups.pop(0)
            radius = reach(group.best)
            rest = [g for g in groups if g.themes == group.themes]
            anywhere = threshold() > -math.inf and radius == math.inf
            if anywhere and rest and reach(rest[0].best) == math.inf:
                # Both service levels of this theme level are read everywhere whatever the first finds.
                groups.remove(rest[0])
                group = Group(group.themes, "any", group.best)
            if radius > NEAR_KM:  # closer members are in the first probe already
                await probe(group, radius if radius <= FAR_KM else math.inf)
    return sorted(found.items(), key=lambda item: (-item[1], item[0]))[:keep], probes


async def candidates(
    conn: asyncpg.Connection | asyncpg.Pool, need: NeedRead, weights: Weights, limit: int
) -> list[ActorProfile]:
    """Actors that may answer the need, best first.

    The eligible actors are ranked by the structured criteria and cut to a short list of
    `RERANK_FACTOR * limit` (`short_list`); only that list reads the actors' texts, adds the full-text
    relevance and is cut to `limit`.
    """
    best, probes = await short_list(conn, need, weights, limit * RERANK_FACTOR)
    logger.debug("need %s: short list from %s", need.id, probes)
    rows = await conn.fetch(
        f"""
        WITH q AS (SELECT {NEED_QUERY.format(text="$3")} AS query), ranked AS MATERIALIZED (
            SELECT s.id, t.activities, ts_rank(t.search, q.query, 32) AS text_rank,
                   s.structured + $4 * ts_rank(t.search, q.query, 32) AS rank
            FROM unnest($1::uuid[], $2::float8[]) AS s (id, structured) JOIN actor_texts t USING (id), q
            ORDER BY rank DESC, s.id
            LIMIT $5
        )  -- only the kept actors' rows are read
        SELECT a.id, a.name, a.kind, a.themes, a.service_types, a.territories, a.lat, a.lon, a.qpv_code,
               r.activities, r.text_rank
        FROM ranked r JOIN actors a USING (id)
        ORDER BY r.rank DESC, a.id
        """,
        [actor_id for actor_id, _ in best],
        [score for _, score in best],
        f"{need.title} {need.description}",
        Shares.of(weights, need).text,
        limit,
    )
    return [actor_profile(row, float(row["text_rank"])) for row in rows]


async def open_needs_for(conn: asyncpg.Connection, actor_id: uuid.UUID) -> list[tuple[asyncpg.Record, float]]:
    """Open needs sharing a theme with the actor, with the text relevance of the actor to each."""
    rows = await conn.fetch(
        f"""
        SELECT n.*, ts_rank(t.search, {NEED_QUERY.format(text="n.title || ' ' || n.description")}, 32) AS text_rank
        FROM actors a JOIN actor_texts t USING (id)
        JOIN needs n ON n.status = 'published' AND n.deadline > now() AND n.themes && a.themes
        WHERE a.id = $1 AND a.status = 'active'
        """,
        actor_id,
    )
    return [(row, float(row["text_rank"])) for row in rows]


# --- matches -------------------------------------------------------------------------------------------

MATCH_COLUMNS = (
    "m.id, m.need_id, m.actor_id, m.score, m.reasons, m.status, m.response_comment, m.created_at, m.updated_at"
)


def match_read(row: asyncpg.Record) -> MatchRead:
    return MatchRead(
        id=str(row["id"]),
        need_id=str(row["need_id"]),
        actor_id=str(row["actor_id"]),
        actor_name=row.get("actor_name"),
        score=float(row["score"]),
        reasons=row["reasons"],
        status=row["status"],
        response_comment=row["response_comment"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def match_state(conn: asyncpg.Connection, need_id: uuid.UUID) -> tuple[dict[uuid.UUID, float], int]:
    """The actors already matched to a need with their scores, and how many said interested."""
    rows = await conn.fetch("SELECT actor_id, score, status FROM matches WHERE need_id = $1", need_id)
    interested = sum(1 for r in rows if r["status"] in ("interested", "selected"))
    return {r["actor_id"]: float(r["score"]) for r in rows}, interested


async def insert_matches(
    conn: asyncpg.Connection, need_id: uuid.UUID, found: Sequence[tuple[uuid.UUID, float, list[Any]]], status: str
) -> list[asyncpg.Record]:
    """Store (actor, score, reasons) matches of a need in one statement; the rows created, in `found`'s order."""
    rows = await conn.fetch(
        f"""
        INSERT INTO matches AS m (id, need_id, actor_id, score, reasons, status)
        SELECT gen_random_uuid(), $1, f.actor_id, f.score, f.reasons::jsonb, $5
        FROM unnest($2::uuid[], $3::real[], $4::text[]) AS f (actor_id, score, reasons)
        ON CONFLICT (need_id, actor_id) DO NOTHING
        RETURNING {MATCH_COLUMNS}
        """,
        need_id,
        [actor_id for actor_id, _, _ in found],
        [score for _, score, _ in found],
        [orjson.dumps(reasons).decode() for _, _, reasons in found],
        status,
    )
    by_actor = {row["actor_id"]: row for row in rows}
    return [by_actor[actor_id] for actor_id, _, _ in found if actor_id in by_actor]


async def withdraw_pending(conn: asyncpg.Connection, need_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""
            UPDATE matches AS m SET status = 'withdrawn', updated_at = now()
            WHERE need_id = $1 AND status = ANY($2::text[])
            RETURNING {MATCH_COLUMNS}
            """,
            need_id,
            [s.value for s in PENDING_MATCH],
        )
    )


async def get_match(
    conn: asyncpg.Connection | asyncpg.Pool, match_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF m" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""SELECT {MATCH_COLUMNS}, a.name AS actor_name, n.owner_id, n.title AS need_title, n.status AS need_status
            FROM matches m JOIN needs n ON n.id = m.need_id LEFT JOIN actors a ON a.id = m.actor_id
            WHERE m.id = $1{lock}""",
        match_id,
    )
    return row


async def get_matches(conn: asyncpg.Connection | asyncpg.Pool, match_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT {MATCH_COLUMNS}, a.name AS actor_name, n.owner_id
                FROM matches m JOIN needs n ON n.id = m.need_id LEFT JOIN actors a ON a.id = m.actor_id
                WHERE m.id = ANY($1::uuid[])""",
            match_ids,
        )
    )


async def set_match_status(
    conn: asyncpg.Connection, match_id: uuid.UUID, status: str, comment: str | None
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        UPDATE matches AS m SET status = $2, response_comment = coalesce($3, response_comment), updated_at = now()
        WHERE id = $1 RETURNING {MATCH_COLUMNS}
        """,
        match_id,
        status,
        comment,
    )
    return row


async def list_matches(
    conn: asyncpg.Connection | asyncpg.Pool, *, need_id: uuid.UUID | None = None, actor_id: uuid.UUID | None = None
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT {MATCH_COLUMNS}, a.name AS actor_name FROM matches m LEFT JOIN actors a ON a.id = m.actor_id
                WHERE ($1::uuid IS NULL OR m.need_id = $1) AND ($2::uuid IS NULL OR m.actor_id = $2)
                ORDER BY m.score DESC, m.id LIMIT 500""",
            need_id,
            actor_id,
        )
    )


async def best_matches_of(
    conn: asyncpg.Connection | asyncpg.Pool, *, by: Literal["need_id", "actor_id"], ids: Sequence[uuid.UUID], first: int
) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """The `first` best matches of each need (`by="need_id"`) or each actor, in one statement, in `list_matches`'s
    order: the batch behind the gateway's `Need.matches` and `Actor.matches`."""
    column = {"need_id": "need_id", "actor_id": "actor_id"}[by]  # a column name, never the caller's text
    wanted = list(dict.fromkeys(ids))
    rows = await conn.fetch(
        f"""SELECT w.key, {MATCH_COLUMNS}, a.name AS actor_name
            FROM unnest($1::uuid[]) AS w (key)
            CROSS JOIN LATERAL (
                SELECT * FROM matches WHERE matches.{column} = w.key ORDER BY score DESC, id LIMIT $2
            ) m
            LEFT JOIN actors a ON a.id = m.actor_id
            ORDER BY w.key, m.score DESC, m.id""",
        wanted,
        first,
    )
    found: dict[uuid.UUID, list[asyncpg.Record]] = {key: [] for key in wanted}
    for row in rows:
        found[row["key"]].append(row)
    return found


def now() -> datetime:
    return datetime.now(UTC)
