"""The candidate planner: which replica actors may answer a need, ranked and capped in SQL before Python scores them.

The SQL ranks with `scoring.evaluate`'s formula (without its text part), in probes whose reach the scores bound
(`short_list`); the short list then reads the actors' texts (`candidates`). Besides the shared-theme door, each
other door of services/contracts/doors.py is a probe of its own (`door_candidates`), bounded by the need's
perimeter and by a budget of candidates. The reverse question — which open needs a new or changed actor may
answer, through any door — is `open_needs_for`; `profiles_of` and `matched_needs_of` read what a need's or an
actor's change scores again. Plain persistence stays in `store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg

from services.contracts import relations, territories
from services.contracts.doors import DOOR_SERVICE_TYPES, Door
from services.contracts.synonyms import need_query
from services.matching.model import NeedRead
from services.matching.scoring import ActorProfile, NeedProfile, Weights, qpv_prefix
from services.matching.store import actor_profile

logger = logging.getLogger("maillage.matching")


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
        query=need_query(need.title, need.description, need.service_types),
    )


# --- candidates, ranked and capped in SQL ------------------------------------------------------------

# An OR query of the need's French lexemes, so that any shared word counts.
NEED_QUERY = """(SELECT to_tsquery('simple', coalesce(string_agg(quote_literal(l), ' | '), ''))
   FROM (SELECT l FROM unnest(tsvector_to_array(to_tsvector('fr_unaccent', {text}))) AS l
         WHERE length(l) > 2 LIMIT 40) AS lexemes)"""
RERANK_FACTOR = 4  # the structured rank keeps this many times `limit` actors; text relevance reorders them
# What scoring reads of a replica actor `a` and its texts `t` (store.actor_profile).
PROFILE_COLUMNS = """a.id, a.name, a.kind, a.themes, a.service_types, a.territories, a.lat, a.lon, a.qpv_code,
    t.activities, t.description, t.name_keys, t.body_keys, t.keys_version"""


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
    # The weighted shared fraction of relations.theme_credit (a public theme beside a job counts less), each of
    # the need's themes ($2, in need.themes' order) with its weight.
    theme_weights = relations.theme_weights(need.themes)
    weighted = " + ".join(
        f"(($2::text[])[{i}] = ANY(c.themes))::int * {theme_weights[theme]!r}"
        for i, theme in enumerate(need.themes, start=1)
    )
    themes = f"({weighted or '0'})::float8 / {sum(theme_weights.values()) or 1.0!r}"
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
# Wider discs read grid cells (migration 0006) when the group asks all the need's service types or all its themes:
# the GiST would walk every actor of the area for the few with those codes, where the GIN returns only actors
# holding their keys. Narrower discs, or a group asking neither, are faster on the GiST.
CELLS_KM = 15.0
FAR_KM = 150.0  # beyond it a group is probed everywhere (and the flat-earth distance of _rank_sql drifts)
EPSILON = 1e-9  # slack on score bounds, so that rounding never drops an actor that ties the threshold
COLUMNS = "a.id, a.kind, a.themes, a.service_types, a.lat, a.lon, a.qpv_code"
# The geographic rules, as a condition on one replica row `a`. The need's place is a scalar subquery (computed
# once per probe) rather than a joined CTE, so that the planner always puts it in the place indexes' conditions.
PLACE = "(SELECT ll_to_earth($5, $6))"
# A disc probe's radius ($12 km), inflated so that its box (flat, or cells) holds the whole spherical disc.
DISC_KM = "($12 * 1.03 + 0.5)"
PERIMETER_KM = "($8 * 1.03 + 0.5)"  # the same for the need's perimeter disc ($8 km)
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

    def territory_keys(self, places: str, asked: str, count: int) -> str:
        """The group's members whose `places` (the row's territories, or its activities' reach) meet the `count`
        territories of the need's `asked` (its perimeter $7, or its commune's territories $9), as SQL on the
        (territory, code) keys of migrations 0009 and 0012: for each asked territory, the row has every
        (territory, code) pair the level requires (all the need's themes, all its service types) and one of
        those it accepts (one of its themes) — one GIN scan each, reading only those pairs. A
        (territories, themes, service types) GIN intersected a territory's whole posting list with each code's
        (1.5 ms of every probe anywhere at 1,000,000 actors, bench/matching.py), and the pairs of one code alone
        read every actor of the territory with the need's first theme (6,000 rows for 43 kept). The caller
        rechecks the exact rule."""
        if count == 0:
            return "false"
        if count > PAIR_TERRITORIES:  # one scan of the pairs of one code: the first theme required, or any theme
            return _in_territories(
                KEYS, f"match_keys({THEME_LEVELS[self.themes].cells}, '{{}}'::text[])", places, asked
            )
        row = f"territory_keys({places}, {KEYS})"
        # A need's themes are never empty, and "all" its service types is a level only when it asks some.
        themes = "$2::text[]" if self.themes == "all" else "'{}'::text[]"
        services = "$3::text[]" if self.services == "all" else "'{}'::text[]"
        required = f"match_keys({themes}, {services})" if "all" in (self.themes, self.services) else None
        accepted = "match_keys($2::text[], '{}'::text[])" if self.themes != "all" else None
        ors = []
        for index in range(1, count + 1):
            territory = f"ARRAY[({asked}::text[])[{index}]]"
            each = [f"{row} OPERATOR(pg_catalog.@>) territory_keys({territory}, {required})"] if required else []
            if accepted:
                each.append(f"{row} OPERATOR(pg_catalog.&&) territory_keys({territory}, {accepted})")
            ors.append(" AND ".join(each))
        return "(" + " OR ".join(ors) + ")"

    def disc_keys(self, radius: str, theme_count: int) -> str:
        """The group's members within `radius` km (SQL) of the need, on the grid-cell keys, as SQL. A member of
        all the need's `theme_count` themes holds a key of each in its cell, so the GIN intersects one key set per
        theme: on the first theme's alone, a 20 km perimeter around a city read 938 rows for 17 members
        (bench/matching.py)."""
        service = SERVICE_LEVELS[self.services].cells
        if self.themes == "all":
            return " AND ".join(
                f"{PLACE_KEYS} disc_keys(ARRAY[($2::text[])[{i}]], {service}, $5, $6, {radius})"
                for i in range(1, theme_count + 1)
            )
        return f"{PLACE_KEYS} disc_keys({THEME_LEVELS[self.themes].cells}, {service}, $5, $6, {radius})"


ANY_THEME = Group("any", "any", math.inf)
# Up to this many territories, a probe anywhere reads each one's (territory, code) pairs on its own (Group.
# territory_keys); a larger perimeter is read on one code's pairs at once.
PAIR_TERRITORIES = 8


def reads_cells(group: Group, radius_km: float) -> bool:
    """Whether the group's members within `radius_km` of the need are read on the grid cells (CELLS_KM)."""
    return radius_km > CELLS_KM and "all" in (group.themes, group.services)


def _groups(need: NeedRead, weights: Weights) -> list[Group]:
    """The overlap levels of the need's candidates, best first (each bound counts the QPV bonus when asked)."""
    share = Shares.of(weights, need)
    themes = {"all": share.themes}
    if len(need.themes) > 1:  # one theme short at best: the lightest one (relations.theme_weights)
        theme_weights = relations.theme_weights(need.themes).values()
        themes["some"] = share.themes * (sum(theme_weights) - min(theme_weights)) / sum(theme_weights)
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


def _stage_sql(
    rank: str,
    group: Group,
    *,
    disc: bool,
    cells: bool = False,
    plain: bool = False,
    perimeter: int = 0,
    commune_places: int = 0,
    perimeter_cells: bool = False,
    theme_count: int = 1,
) -> str:
    """One probe: the group's eligible actors, within $12 km of the need or anywhere, best `keep` first.

    `cells`: a disc probe reads the grid-cell GIN instead of the place GiST. `plain`: the rules as a filter
    on every actor, without any index path (the exhaustive reference). A probe anywhere reads the need's
    `perimeter` territories ($7) and its commune's `commune_places` ($9) one by one, and its perimeter disc on the
    grid cells when `perimeter_cells`. `theme_count`: how many themes the need has.
    """
    themes, keyed = group.conditions()
    if plain:
        source = f"SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND {themes} AND {ELIGIBLE_PLACE}"
    elif disc and cells:
        # One GIN probe of the grid cells the disc touches; the fence (OFFSET 0)
        # keeps the geographic rules out of the scan, whose index paths would read every actor of the area.
        source = f"""SELECT {COLUMNS} FROM (
                SELECT {DISC_COLUMNS} FROM actors a
                WHERE a.status = 'active' AND {group.disc_keys(DISC_KM, theme_count)} OFFSET 0
            ) a WHERE {themes} AND {ELIGIBLE_PLACE}"""
    elif disc:
        # One GiST probe on (place, keys).
        source = f"""SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.lat IS NOT NULL
               AND ll_to_earth(a.lat, a.lon) <@ earth_box({PLACE}, {DISC_KM} * 1000)
               AND {keyed} AND {ELIGIBLE_PLACE}"""
    else:
        # The need's perimeter disc ($8 km), on the grid cells as a wide disc probe (fenced the same way) or on
        # the place GiST.
        if perimeter_cells:
            perimeter_disc = f"""SELECT {COLUMNS} FROM (
                SELECT {COLUMNS} FROM actors a
                WHERE a.status = 'active' AND {group.disc_keys(PERIMETER_KM, theme_count)} OFFSET 0
            ) a WHERE earth_distance({PLACE}, ll_to_earth(a.lat, a.lon)) <= $8 * 1000 AND {themes}"""
        else:
            perimeter_disc = f"""SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.lat IS NOT NULL
               AND $8 > 0 AND earth_box({PLACE}, $8 * 1000) @> ll_to_earth(a.lat, a.lon)
               AND earth_distance({PLACE}, ll_to_earth(a.lat, a.lon)) <= $8 * 1000 AND {keyed}"""
        # Each geographic rule is one index probe; an actor that several rules admit is kept once below (by
        # id alone: UNION would sort every row on all its columns, arrays included).
        source = f"""
            SELECT {COLUMNS} FROM actors a
             WHERE a.status = 'active' AND {group.territory_keys("a.territories", "$7", perimeter)}
               AND (a.territories && $7 AND {themes}) IS TRUE
            UNION ALL
            {perimeter_disc}
            UNION ALL
            SELECT {COLUMNS} FROM actors a
             WHERE a.status = 'active' AND {group.territory_keys("a.reach", "$9", commune_places)}
               AND (a.reach && $9 AND {themes}) IS TRUE
            UNION ALL
            SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.reach_radius_km > 0
               AND a.lat IS NOT NULL AND {keyed}
               AND earth_box(ll_to_earth(a.lat, a.lon), a.reach_radius_km * 1000) @> {PLACE}
            UNION ALL
            SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.national AND {themes}"""
    return _ranked(rank, source, several=not (disc or plain))


def _ranked(rank: str, source: str, *, several: bool) -> str:
    """The eligible kinds among the `source` rows, ranked, best `keep` ($10) first; `several`: the sources may
    admit an actor twice, keep it once."""
    ranked = f"""SELECT {"DISTINCT ON (c.id)" if several else ""} c.id, {rank} AS structured
        FROM cand c
        WHERE c.id <> $1 AND (CASE WHEN cardinality($4::text[]) = 0 THEN c.kind <> 'local_authority'
                                   ELSE c.kind = ANY($4) END)"""
    if several:
        ranked = f"SELECT id, structured FROM ({ranked} ORDER BY c.id) AS kept"
    return f"""
        WITH types AS (  -- types the parameters that a probe may leave unused (it is never read)
            SELECT $2::text[] AS themes, $3::text[] AS service_types, $9::text[] AS place, $12::float8 AS radius_km
        ), cand AS ({source})
        {ranked}
        ORDER BY structured DESC, id
        LIMIT $10
        """


def _params(need: NeedRead, keep: int, rank_params: list[float]) -> list[object]:
    """$1-$19 of every probe: the need's rules, `keep`, the radius slot ($12) and the rank's weights."""
    return [
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
    params = _params(need, keep, rank_params)
    found: dict[uuid.UUID, float] = {}
    probes: list[Probe] = []

    def threshold() -> float:
        """The `keep`-th best score found so far: no actor below it can enter the list."""
        scores = sorted(found.values(), reverse=True)
        return scores[keep - 1] if len(scores) >= keep else -math.inf

    closeness = Shares.of(weights, need).distance
    perimeter = len(need.effective_perimeter)
    commune_places = len(territories.territories_of_commune(need.commune_code))

    def reach(best: float) -> float:
        return reach_km(best, threshold(), closeness, weights.distance_scale_km)

    async def probe(group: Group, radius_km: float) -> None:
        params[11] = radius_km
        disc = math.isfinite(radius_km)
        cells = disc and reads_cells(group, radius_km)
        sql = _stage_sql(
            rank,
            group,
            disc=disc,
            cells=cells,
            plain=not prune,
            perimeter=perimeter,
            commune_places=commune_places,
            perimeter_cells=reads_cells(group, need.perimeter.radius_km or 0.0),
            theme_count=len(need.themes),
        )
        rows = await conn.fetch(sql, *params)
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


# A door's radius probe keeps the nearest actors that pass its condition, this many times its budget, before they
# are ranked: a common concept ("ressourcerie") can name hundreds of actors of a city's disc, and reading them all
# to rank them was the door's cost (bench/matching.py). Among actors without a shared theme the structured rank is
# mostly closeness, so the nearest few hold the best.
NEAREST_FACTOR = 4
# Its territories probe reads at most this many times its budget (any of them: the GIN has no order), so that a
# concept named all over a métropole does not make the door read it all; real descriptions name a concept far
# more rarely than bench/matching.py's generated ones (where most actors say "ressourcerie"), and it never binds
# on the quality set.
TERRITORY_READ_FACTOR = 20


def _door_sql(rank: str, codes: str, keyed: str, territory_keys: str) -> str:
    """A door's probe: actors whose `codes` condition holds (on $20) inside the need's perimeter — its
    territories ($7, a GIN probe reading at most `TERRITORY_READ_FACTOR` times the budget) or its radius ($8 km,
    the place GiST read nearest first, `NEAREST_FACTOR` times the budget) — never through activities' reach or a
    national activity, best `keep` ($10) first. `keyed` is the same condition on the keys of a place GiST
    (migrations 0005 and 0008), `territory_keys` on the (territory, code) keys of migration 0009."""
    source = f"""
        (SELECT {COLUMNS} FROM actors a
         WHERE a.status = 'active' AND {territory_keys}
           -- the rechecks, as tests rather than operators, so that no other GIN index adds its whole posting lists
           AND (a.territories && $7 AND {codes}) IS TRUE
         LIMIT $10 * {TERRITORY_READ_FACTOR})
        UNION ALL
        (SELECT {COLUMNS} FROM actors a WHERE a.status = 'active' AND a.lat IS NOT NULL AND $8 > 0
           AND earth_box({PLACE}, $8 * 1000) @> ll_to_earth(a.lat, a.lon)
           AND earth_distance({PLACE}, ll_to_earth(a.lat, a.lon)) <= $8 * 1000 AND {keyed} AND {codes}
         ORDER BY ll_to_earth(a.lat, a.lon) <-> {PLACE} LIMIT $10 * {NEAREST_FACTOR})"""
    return _ranked(rank, source, several=True)


# Each door's condition on the replica row `a` (its codes in $20), the same on the place GiST's keys, and on the
# (territory, code) keys of the perimeter's territories. The related-theme and text doors leave out actors sharing
# one of the need's themes: the shared-theme probes have them (the text door is for actors whose declared themes
# differ from the need's).
CONCEPT_KEYS = "match_keys(a.concepts, '{}'::text[])"
# The door's codes ($20) as keys of match_keys' first argument, as the actor's themes or concepts are keyed.
ASKED_KEYS = "match_keys($20::text[], '{}'::text[])"


def _in_territories(keys: str, asked: str, places: str = "a.territories", perimeter: str = "$7") -> str:
    """The (territory, code) keys of the row `a` (its `places` with its codes' `keys`) meet those of the need's
    `perimeter` and the asked codes (`asked`), as SQL on migration 0009's and 0012's indexes."""
    return f"territory_keys({places}, {keys}) OPERATOR(pg_catalog.&&) territory_keys({perimeter}::text[], {asked})"


DOOR_PROBES = {
    Door.related_theme: (
        "a.themes && $20::text[] AND NOT a.themes && $2::text[]",
        f"{KEYS} && {ASKED_KEYS}",
        _in_territories(KEYS, ASKED_KEYS),
    ),
    Door.text: (
        "a.concepts && $20::text[] AND NOT a.themes && $2::text[]",
        f"a.concepts IS NOT NULL AND {CONCEPT_KEYS} && {ASKED_KEYS}",
        _in_territories(CONCEPT_KEYS, ASKED_KEYS),
    ),
    Door.service_type: (
        "a.service_types && $20::text[]",
        f"{KEYS} && match_keys('{{}}'::text[], $20::text[])",
        _in_territories(KEYS, "match_keys('{}'::text[], $20::text[])"),
    ),
}


async def door_candidates(
    conn: asyncpg.Connection | asyncpg.Pool, need: NeedRead, weights: Weights, budget: int
) -> dict[Door, list[tuple[uuid.UUID, float]]]:
    """The best `budget` candidates of each door the need opens besides the shared theme, by structured score.

    Each is one probe inside the need's perimeter (`_door_sql`), never through activities' reach: related theme,
    actors of the need's neighbour themes (services.contracts.relations) without one of its own; text, actors
    whose own words name one of the need's concepts (`actors.concepts`); service type, actors offering premises
    for a premises need. A door whose weight is 0 is closed and not probed. Running the shared-theme short list
    over the neighbour themes instead (activities' reach included) found one more acceptable actor on the
    quality set (P@5 0.941 against 0.934) for four times the cost (bench.matching, 100,000 actors: 30 ms against
    7 ms at p50).
    """
    found: dict[Door, list[tuple[uuid.UUID, float]]] = {}
    asked = {
        Door.related_theme: list(relations.neighbours(need.themes)) if weights.related_theme > 0 else [],
        Door.text: sorted(need_query(need.title, need.description, need.service_types).concepts)
        if weights.text_door > 0
        else [],
        Door.service_type: sorted(DOOR_SERVICE_TYPES & set(need.service_types))
        if weights.service_type_door > 0
        else [],
    }
    rank, params = None, None
    for door, codes in asked.items():
        if not codes:
            continue
        if rank is None:
            rank, rank_params = _rank_sql(weights, need)
            params = _params(need, budget, rank_params)
        assert params is not None
        rows = await conn.fetch(_door_sql(rank, *DOOR_PROBES[door]), *params, codes)
        found[door] = [(row["id"], row["structured"]) for row in rows]
    return found


# How long a match waits for an idle connection of its spare pool before it probes the doors on its own one.
SPARE_WAIT_S = 0.005


@contextlib.asynccontextmanager
async def spare_connection(pool: asyncpg.Pool | None) -> AsyncIterator[asyncpg.Connection | None]:
    """An idle connection of `pool`, or None when it has none free at once.

    Never waited for: a caller that holds a connection while it waits for another could deadlock a full pool, and a
    busy pool (a burst of needs on every core) has no spare time to give anyway.
    """
    if pool is None or pool.get_idle_size() == 0:
        yield None
        return
    try:
        conn = await pool.acquire(timeout=SPARE_WAIT_S)
    except TimeoutError:
        yield None
        return
    try:
        yield conn
    finally:
        await pool.release(conn)


async def candidates(
    conn: asyncpg.Connection | asyncpg.Pool,
    need: NeedRead,
    weights: Weights,
    limit: int,
    door_budget: int = 0,
    spare: asyncpg.Pool | None = None,
) -> list[ActorProfile]:
    """Actors that may answer the need, best first.

    The eligible actors are ranked by the structured criteria and cut to a short list of
    `RERANK_FACTOR * limit` (`short_list`); only that list reads the actors' texts, adds the full-text
    relevance and is cut to `limit`. The other doors' candidates (`door_candidates`, at most `door_budget`
    each) are added whole: their structured rank lacks the door's own credit, so it must not cut them.

    The door probes do not depend on the short list's, so on an idle connection of `spare` (`spare_connection`)
    they run beside them, on another core of PostgreSQL; they read only committed replica rows, as each statement
    of the short list does (READ COMMITTED). Without one they follow the short list on `conn`.
    """
    shortlisted = short_list(conn, need, weights, limit * RERANK_FACTOR)
    through: dict[Door, list[tuple[uuid.UUID, float]]] = {}
    if door_budget <= 0:
        best, probes = await shortlisted
    else:
        async with spare_connection(spare) as side:
            if side is None:
                best, probes = await shortlisted
                through = await door_candidates(conn, need, weights, door_budget)
            else:
                async with asyncio.TaskGroup() as group:  # one failing cancels the other before `side` is released
                    beside = group.create_task(door_candidates(side, need, weights, door_budget))
                    best, probes = await shortlisted
                through = beside.result()
    logger.debug("need %s: short list from %s", need.id, probes)
    scores = dict(best)
    door_ids: set[uuid.UUID] = set()
    for found in through.values():
        for actor_id, structured in found:
            scores.setdefault(actor_id, structured)
            door_ids.add(actor_id)
    ids = list(scores)
    rows = await conn.fetch(
        f"""
        WITH q AS (SELECT {NEED_QUERY.format(text="$3")} AS query), ranked AS MATERIALIZED (
            SELECT s.id, s.door, ts_rank(t.search, q.query, 32) AS text_rank,
                   s.structured + $4 * ts_rank(t.search, q.query, 32) AS rank
            FROM unnest($1::uuid[], $2::float8[], $6::bool[]) AS s (id, structured, door)
            JOIN actor_texts t USING (id), q
        ), kept AS (
            (SELECT id, text_rank, rank FROM ranked WHERE NOT door ORDER BY rank DESC, id LIMIT $5)
            UNION ALL
            SELECT id, text_rank, rank FROM ranked WHERE door
        )  -- only the kept actors' rows are read
        SELECT {PROFILE_COLUMNS}, r.text_rank
        FROM kept r JOIN actors a USING (id) JOIN actor_texts t USING (id)
        ORDER BY r.rank DESC, a.id
        """,
        ids,
        [scores[actor_id] for actor_id in ids],
        f"{need.title} {need.description}",
        Shares.of(weights, need).text,
        limit,
        [actor_id in door_ids for actor_id in ids],
    )
    return [actor_profile(row, float(row["text_rank"])) for row in rows]


async def profiles_of(conn: asyncpg.Connection, need: NeedRead, actor_ids: list[uuid.UUID]) -> list[ActorProfile]:
    """These actors, when active, as `candidates` reads them for the need (its text relevance included)."""
    rows = await conn.fetch(
        f"""
        WITH q AS (SELECT {NEED_QUERY.format(text="$2")} AS query)
        SELECT {PROFILE_COLUMNS}, ts_rank(t.search, q.query, 32) AS text_rank
        FROM actors a JOIN actor_texts t USING (id), q
        WHERE a.id = ANY($1::uuid[]) AND a.status = 'active'
        """,
        actor_ids,
        f"{need.title} {need.description}",
    )
    return [actor_profile(row, float(row["text_rank"])) for row in rows]


async def matched_needs_of(
    conn: asyncpg.Connection, actor_id: uuid.UUID, statuses: Iterable[str]
) -> list[tuple[asyncpg.Record, float]]:
    """The open needs where the actor has a match in one of `statuses`, with its text relevance to each (as
    `open_needs_for` gives it), in need order (the order their locks are taken in)."""
    rows = await conn.fetch(
        f"""
        SELECT n.*, ts_rank(t.search, {NEED_QUERY.format(text="n.title || ' ' || n.description")}, 32) AS text_rank
        FROM matches m JOIN needs n ON n.id = m.need_id AND n.status = 'published' AND n.deadline > now()
        JOIN actor_texts t ON t.id = m.actor_id
        WHERE m.actor_id = $1 AND m.status = ANY($2::text[])
        ORDER BY n.id
        """,
        actor_id,
        sorted(statuses),
    )
    return [(row, float(row["text_rank"])) for row in rows]


async def open_needs_for(conn: asyncpg.Connection, actor_id: uuid.UUID) -> list[tuple[asyncpg.Record, float]]:
    """Open needs the actor may answer through a door — a shared or related theme, a concept of its own words,
    the premises it offers — with its text relevance to each (scoring decides; a need whose concepts predate
    migration 0007, NULL, is read too)."""
    rows = await conn.fetch(
        f"""
        SELECT n.*, ts_rank(t.search, {NEED_QUERY.format(text="n.title || ' ' || n.description")}, 32) AS text_rank
        FROM actors a JOIN actor_texts t USING (id)
        JOIN needs n ON n.status = 'published' AND n.deadline > now()
            AND (n.themes && a.themes OR n.themes && $2::text[] OR n.concepts && a.concepts OR n.concepts IS NULL
                 OR (n.service_types && $3::text[] AND a.service_types && $3::text[]))
        WHERE a.id = $1 AND a.status = 'active'
        """,
        actor_id,
        list(relations.neighbours(await conn.fetchval("SELECT themes FROM actors WHERE id = $1", actor_id) or [])),
        sorted(DOOR_SERVICE_TYPES),
    )
    return [(row, float(row["text_rank"])) for row in rows]
