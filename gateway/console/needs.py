"""A local authority's needs in the console: its list, the guided publish and edit form, a need's page whose
matches appear and change live (a server-sent stream of the `matchFound` and `matchUpdated` subscriptions), the
choice of one match and the closing of the need. Every read and write is a GraphQL operation of the session."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import FormData

from gateway.console.home import actor_name
from gateway.console.web import (
    CSRF_FIELD,
    PAGE_HEADERS,
    Console,
    ConsolePage,
    FormErrors,
    Session,
    french_number,
    territory_label,
    territory_labels,
)
from gateway.entry import subscribe
from services.common.auth import Role
from services.contracts.errors import ErrorCode

PARIS = ZoneInfo("Europe/Paris")
STREAMS_PER_SESSION = 4  # a person with a few tabs open; more is a loop somewhere
SESSION_CHECK_S = 3.0  # how late a revoked session's open stream may end, at worst
LAST_VISIT_COOKIE = "maillage_besoins_vus"
# Read through GraphQL like the rest, but kept a little: the vocabulary changes with a release, an authority's
# name (the pages' header) seldom; each page is then one or two operations instead of three or four.
VOCABULARY_TTL_S = 300.0
NAME_TTL_S = 30.0

NEED_KINDS = {
    "PARTNERSHIP": "Partenariat",
    "PROCUREMENT": "Achat (marché public)",
    "QUOTE": "Demande de devis",
    "CALL_FOR_PROJECTS": "Appel à projets",
    "VOLUNTEERING": "Bénévolat",
    "PREMISES": "Locaux",
}
NEED_STATUSES = {
    "published": ("Ouvert", "ouvert"),
    "closed": ("Clos", "ferme"),
    "fulfilled": ("Satisfait", "ferme"),
    "cancelled": ("Annulé", "ferme"),
    "expired": ("Échu", "ferme"),
}
MATCH_STATUSES = {
    "proposed": ("Proposé", "nouveau"),
    "notified": ("Proposé", "nouveau"),
    "viewed": ("Vu", "vu"),
    "interested": ("Intéressé", "interesse"),
    "declined": ("Décliné", "decline"),
    "selected": ("Retenu", "selectionne"),
    "withdrawn": ("Retiré", "retire"),
}
CLOSURES = {"FULFILLED": "Satisfait", "CLOSED": "Clos sans suite", "CANCELLED": "Annulé"}
SELECTABLE = {"interested"}  # the matching service selects an interested actor only

MATCH_FIELDS = """
fragment M on Match {
  id status score responseComment updatedAt
  reasons { code text weight }
  actor { id name kind communeCode }
}
"""
NEEDS_LIST = """
query($owner: ID!, $since: DateTime) {
  needs(filter: {ownerId: $owner}, first: 50) {
    edges { node {
      id title kind status deadline createdAt
      matchCounts(answeredSince: $since) { total interested declined selected answeredSince }
    } }
  }
}
"""
NEED_FIELDS = """
  id version ownerId title description kind themes serviceTypes communeCode communeName
  location { lat lon } perimeter { territories radiusKm places { code kind name } } effectivePerimeter
  eligibleKinds budgetMin budgetMax deadline qpvPriority status closingComment createdAt
"""
NEED_PAGE = (
    "query($id: ID!) { need(id: $id) {"
    + NEED_FIELDS
    + """
    matchCounts { total interested declined selected }
    matches(first: 50) { ...M }
  } }
  """
    + MATCH_FIELDS
)
NEED_MATCHES = "query($id: ID!) { need(id: $id) { id status matches(first: 50) { ...M } } }" + MATCH_FIELDS
NEED_EDIT = "query($id: ID!) { need(id: $id) {" + NEED_FIELDS + " matches(first: 1) { id } } }"
AUTHORITY_PLACE = "query($id: ID!) { actor(id: $id) { communeCode communeName location { lat lon } } }"
VOCABULARY = "{ themes { code label } serviceTypes { code label } actorKinds { code label } }"
COMMUNES = "query($s: String!) { communes(search: $s, first: 8) { code name departement postalCodes } }"
TERRITORIES = "query($s: String!) { territories(search: $s, first: 8) { code kind name } }"
PUBLISH = """
mutation($input: PublishNeedInput!, $key: IdempotencyKey) { publishNeed(input: $input, idempotencyKey: $key) { id } }
"""
UPDATE = "mutation($id: ID!, $input: UpdateNeedInput!) { updateNeed(id: $id, input: $input) { id } }"
SELECT = "mutation($id: ID!, $comment: String) { selectMatch(id: $id, comment: $comment) { id status } }"
CLOSE = """
mutation($id: ID!, $status: NeedClosure!, $comment: String) {
  closeNeed(id: $id, status: $status, comment: $comment) { id status }
}
"""
FOUND = "subscription($n: ID) { matchFound(needId: $n) { ...M } }" + MATCH_FIELDS
UPDATED = "subscription($n: ID!) { matchUpdated(needId: $n) { ...M } }" + MATCH_FIELDS


def territory_choices(perimeter: dict[str, Any]) -> list[tuple[str, str]]:
    """A perimeter's territories as the form's checked choices, (code, label)."""
    return list(zip(perimeter.get("territories") or [], territory_labels(perimeter), strict=True))


# The form's inputs are named after the GraphQL input's fields, so that an API error's `field` finds its input.
FIELDS = (
    "title",
    "description",
    "kind",
    "themes",
    "serviceTypes",
    "communeCode",
    "location.lat",
    "location.lon",
    "perimeter.territories",
    "perimeter.radiusKm",
    "eligibleKinds",
    "budgetMin",
    "budgetMax",
    "deadline",
    "qpvPriority",
)
LABELS = {
    "title": "Titre",
    "description": "Description",
    "kind": "Type de besoin",
    "themes": "Thèmes",
    "serviceTypes": "Types de service",
    "communeCode": "Commune",
    "location.lat": "Latitude",
    "location.lon": "Longitude",
    "perimeter.territories": "Territoires du périmètre",
    "perimeter.radiusKm": "Rayon",
    "eligibleKinds": "Types d'acteurs éligibles",
    "budgetMin": "Budget minimum",
    "budgetMax": "Budget maximum",
    "deadline": "Date limite",
    "qpvPriority": "Priorité QPV",
}


def field_id(name: str) -> str:
    return "champ-" + name.replace(".", "-")


def place_errors(errors: dict[str, str]) -> dict[str, str]:
    """Each API error under the input it concerns: `location` → `location.lat`, `themes.0` → `themes`; an error
    no input matches stays under its own name (the summary still lists it)."""
    placed: dict[str, str] = {}
    for name, message in errors.items():
        target = next((f for f in FIELDS if name == f or name.startswith(f + ".")), None)
        if target is None:
            target = next((f for f in FIELDS if f.startswith(name + ".")), name)
        placed.setdefault(target, message)
    return placed


def status_label(statuses: dict[str, tuple[str, str]], status: str) -> tuple[str, str]:
    return statuses.get(status, (status, "vu"))


def pick(raw: str) -> tuple[str, str]:
    """A picker's value `code|label` (the label keeps the choice readable when the form comes back)."""
    code, _, label = raw.partition("|")
    return code.strip(), (label.strip() or code.strip())


def number(raw: str) -> float:
    value = float(raw.replace("\u202f", "").replace(" ", "").replace(",", "."))
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


class NeedForm:
    """The form's values as the person typed them (kept on error), and the GraphQL input they make."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    @classmethod
    def empty(cls) -> NeedForm:
        return cls({"themes": [], "serviceTypes": [], "eligibleKinds": [], "territories": [], "commune": None})

    @classmethod
    def for_authority(cls, authority: dict[str, Any] | None) -> NeedForm:
        """A new need's form, placed where its authority is (its commune and point, which the person may change):
        most needs are at the town hall's commune, and the API has no commune coordinates to offer instead."""
        form = cls.empty()
        if authority and authority.get("communeCode"):
            code = authority["communeCode"]
            form.values["commune"] = (code, authority.get("communeName") or code)
        if authority and authority.get("location"):
            form.values["location.lat"] = french_number(authority["location"]["lat"])
            form.values["location.lon"] = french_number(authority["location"]["lon"])
        return form

    @classmethod
    def of_form(cls, form: FormData) -> NeedForm:
        def text(name: str) -> str:
            value = form.get(name)
            return value.strip() if isinstance(value, str) else ""

        def many(name: str) -> list[str]:
            return [v for v in form.getlist(name) if isinstance(v, str) and v]

        commune = text("communeCode")
        return cls(
            {
                **{name: text(name) for name in FIELDS if name not in ("communeCode", "perimeter.territories")},
                "themes": many("themes"),
                "serviceTypes": many("serviceTypes"),
                "eligibleKinds": many("eligibleKinds"),
                "qpvPriority": bool(text("qpvPriority")),
                "commune": pick(commune) if commune else None,
                "territories": [pick(v) for v in dict.fromkeys(many("perimeter.territories"))],
            }
        )

    @classmethod
    def of_need(cls, need: dict[str, Any]) -> NeedForm:
        deadline = datetime.fromisoformat(need["deadline"]).astimezone(PARIS).date()
        perimeter = need.get("perimeter") or {}

        def amount(value: float | None) -> str:
            return "" if value is None else (f"{value:.0f}" if value == int(value) else str(value))

        return cls(
            {
                "title": need["title"],
                "description": need["description"],
                "kind": need["kind"].upper(),
                "themes": list(need["themes"]),
                "serviceTypes": list(need["serviceTypes"]),
                "eligibleKinds": list(need["eligibleKinds"]),
                "commune": (need["communeCode"], need.get("communeName") or need["communeCode"]),
                "location.lat": french_number(need["location"]["lat"]),
                "location.lon": french_number(need["location"]["lon"]),
                "territories": territory_choices(perimeter),
                "perimeter.radiusKm": amount(perimeter.get("radiusKm")),
                "budgetMin": amount(need.get("budgetMin")),
                "budgetMax": amount(need.get("budgetMax")),
                "deadline": deadline.isoformat(),
                "qpvPriority": bool(need["qpvPriority"]),
            }
        )

    def graphql_input(self) -> dict[str, Any]:
        """The whole PublishNeedInput, or FormErrors for what cannot even be sent (empty, not a number, not a
        date): the rest (a theme unknown, a commune unknown, a deadline past) is the API's to say."""
        v = self.values
        errors: dict[str, str] = {}
        result: dict[str, Any] = {
            "title": v["title"],
            "description": v["description"] or None,
            "themes": v["themes"],
            "serviceTypes": v["serviceTypes"],
            "eligibleKinds": v["eligibleKinds"],
            "qpvPriority": v["qpvPriority"],
        }
        if not v["title"]:
            errors["title"] = "Donnez un titre au besoin."
        if v["kind"] not in NEED_KINDS:
            errors["kind"] = "Choisissez le type de besoin."
        else:
            result["kind"] = v["kind"]
        if not v["themes"]:
            errors["themes"] = "Cochez au moins un thème."
        if v["commune"] is None:
            errors["communeCode"] = "Cherchez la commune du besoin, puis choisissez-la dans la liste."
        else:
            result["communeCode"] = v["commune"][0]
        point: dict[str, float] = {}
        for name, low, high in (("location.lat", -90, 90), ("location.lon", -180, 180)):
            raw = v[name]
            if not raw:
                errors[name] = f"Indiquez la {LABELS[name].lower()} du lieu (en degrés décimaux)."
                continue
            try:
                value = number(raw)
            except ValueError:
                errors[name] = "Écrivez un nombre en degrés décimaux, par exemple 48,1113."
                continue
            if not low <= value <= high:
                errors[name] = f"Écrivez un nombre entre {low} et {high} degrés."
            point[name.split(".")[1]] = value
        if len(point) == 2:
            result["location"] = point
        perimeter: dict[str, Any] = {}
        if v["territories"]:
            perimeter["territories"] = [code for code, _ in v["territories"]]
        for name in ("perimeter.radiusKm", "budgetMin", "budgetMax"):
            raw = v[name]
            if not raw:
                continue
            try:
                value = number(raw)
            except ValueError:
                errors[name] = "Écrivez un nombre, par exemple 15."
                continue
            if name == "perimeter.radiusKm":
                perimeter["radiusKm"] = value
            else:
                result[name] = value
        result["perimeter"] = perimeter or None
        if not v["deadline"]:
            errors["deadline"] = "Indiquez la date limite des réponses."
        else:
            try:
                day = date.fromisoformat(v["deadline"])
            except ValueError:
                errors["deadline"] = "Écrivez une date, au format AAAA-MM-JJ."
            else:  # the end of that day in France: the date the person chose is still open
                result["deadline"] = datetime.combine(day, time(23, 59, 59), PARIS).isoformat()
        if errors:
            raise FormErrors(fields=errors)
        return result

    def changes(self, before: NeedForm) -> dict[str, Any]:
        """The UpdateNeedInput of what differs from the need as it was (only the fields changed); a field the person
        emptied is sent as null, which removes its value (a budget, the description)."""
        mine, theirs = self.graphql_input(), before.graphql_input()
        changed = {key: value for key, value in mine.items() if theirs.get(key) != value}
        for key in theirs.keys() - mine.keys():
            changed[key] = None  # an emptied budget, absent from `graphql_input` (published without one)
        if "perimeter" in changed and changed["perimeter"] is None:
            # The perimeter itself is required (null is refused); replaced whole, an empty one has no territory
            # and no radius: the owner's territory.
            changed["perimeter"] = {"territories": [], "radiusKm": None}
        return changed


Feed = asyncio.Queue[tuple[str, dict[str, Any] | None]]


class Kept:
    """Values kept for a while, by key (a few: the vocabulary, the names of the authorities signed in)."""

    def __init__(self, ttl_s: float, size: int = 1000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.values: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        now = asyncio.get_running_loop().time()
        kept = self.values.get(key)
        if kept is not None and now - kept[0] < self.ttl_s:
            return kept[1]
        value = await load()
        if len(self.values) >= self.size:
            self.values.clear()
        self.values[key] = (now, value)
        return value


class Streams:
    """The live streams each session has open (a tab each): a few at most, the newest kept, so that one session
    cannot hold hundreds and a page just opened is live even while the one left is not yet known gone (a
    closed connection is noticed at the next write, up to `SESSION_CHECK_S` later)."""

    def __init__(self) -> None:
        self.open: dict[str, list[Feed]] = {}

    def enter(self, session: Session, feed: Feed) -> None:
        mine = self.open.setdefault(session.credential_id, [])
        while len(mine) >= STREAMS_PER_SESSION:
            mine.pop(0).put_nowait(("fin", None))  # the oldest ends (its page keeps its "rafraîchir" link)
        mine.append(feed)

    def leave(self, session: Session, feed: Feed) -> None:
        mine = self.open.get(session.credential_id, [])
        if feed in mine:
            mine.remove(feed)
        if not mine:
            self.open.pop(session.credential_id, None)


def sse(event: str, html: str) -> bytes:
    lines = html.strip().splitlines() or [""]
    return (f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


def install(app: FastAPI, console: Console) -> None:
    streams = Streams()
    words, names, places = Kept(VOCABULARY_TTL_S), Kept(NAME_TTL_S), Kept(NAME_TTL_S)

    async def authority(request: Request) -> tuple[Session, str | None]:
        session = await console.require_session(request)
        if session.role is not Role.COLLECTIVITY or session.actor_id is None:
            raise ConsolePage(
                403, "Accès refusé", "Ces pages sont celles des membres d'une collectivité qui publie des besoins."
            )
        name = await names.get(session.actor_id, lambda: actor_name(console, request, session))
        return session, name

    async def vocabulary(request: Request, session: Session) -> dict[str, Any]:
        data = await words.get("vocabulary", lambda: console.graphql(request, session, VOCABULARY))
        return {
            "themes": data["themes"],
            "service_types": data["serviceTypes"],
            "actor_kinds": [k for k in data["actorKinds"] if k["code"] != "local_authority"],
        }

    async def communes(request: Request, session: Session, search: str) -> list[tuple[str, str]] | None:
        if not search:
            return None
        data = await console.graphql(request, session, COMMUNES, {"s": search})
        return [
            (c["code"], f"{c['name']} ({c['departement']}{', ' + c['postalCodes'][0] if c['postalCodes'] else ''})")
            for c in data["communes"]
        ]

    async def territories(request: Request, session: Session, search: str) -> list[tuple[str, str]] | None:
        if not search:
            return None
        data = await console.graphql(request, session, TERRITORIES, {"s": search})
        return [(t["code"], territory_label(t)) for t in data["territories"]]

    async def form_page(
        request: Request,
        session: Session,
        name: str | None,
        form: NeedForm,
        *,
        need: dict[str, Any] | None = None,
        errors: FormErrors | None = None,
        commune_search: str = "",
        territory_search: str = "",
        status: int = 200,
    ) -> HTMLResponse:
        fields = place_errors(errors.fields) if errors else {}
        return console.render(
            request,
            "needs_form.html",
            session,
            status=status,
            title=("Modifier le besoin" if need else "Publier un besoin"),
            actor_name=name,
            need=need,
            form=form.values,
            errors=fields,
            general=errors.general if errors else [],
            labels=LABELS,
            field_id=field_id,
            kinds=NEED_KINDS,
            commune_search=commune_search,
            commune_results=await communes(request, session, commune_search),
            territory_search=territory_search,
            territory_results=await territories(request, session, territory_search),
            action=(f"/besoins/{need['id']}/modifier" if need else "/besoins/nouveau"),
            **await vocabulary(request, session),
        )

    async def submitted(request: Request, session: Session) -> tuple[FormData, NeedForm, str, str, str]:
        data = await request.form()
        sent = data.get(CSRF_FIELD)
        console.check_csrf(request, session, sent if isinstance(sent, str) else None)
        action = data.get("action")
        commune_search = data.get("commune_recherche")
        territory_search = data.get("territoire_recherche")
        return (
            data,
            NeedForm.of_form(data),
            action if isinstance(action, str) else "",
            commune_search.strip() if isinstance(commune_search, str) else "",
            territory_search.strip() if isinstance(territory_search, str) else "",
        )

    # --- my needs ------------------------------------------------------------------------------------------

    @app.get("/besoins", response_class=HTMLResponse, include_in_schema=False)
    async def _list(request: Request) -> HTMLResponse:
        session, name = await authority(request)
        now = datetime.now(UTC)
        try:
            since = datetime.fromisoformat(request.cookies.get(LAST_VISIT_COOKIE, ""))
            if since.tzinfo is None:
                raise ValueError(since)
        except ValueError:
            since = now - timedelta(days=7)
        data = await console.graphql(
            request, session, NEEDS_LIST, {"owner": session.actor_id, "since": since.isoformat()}
        )
        needs = [edge["node"] for edge in data["needs"]["edges"]]
        response = console.render(
            request,
            "needs_list.html",
            session,
            title="Mes besoins",
            actor_name=name,
            needs=needs,
            since=since.astimezone(PARIS),
            statuses=NEED_STATUSES,
            kinds=NEED_KINDS,
            day=day_of,
        )
        response.set_cookie(
            LAST_VISIT_COOKIE, now.isoformat(), httponly=True, samesite="lax", secure=console.secure_cookies
        )
        return response

    # --- publish -------------------------------------------------------------------------------------------

    @app.get("/besoins/nouveau", response_class=HTMLResponse, include_in_schema=False)
    async def _new(request: Request) -> HTMLResponse:
        session, name = await authority(request)
        actor_id = str(session.actor_id)
        place = await places.get(actor_id, lambda: console.graphql(request, session, AUTHORITY_PLACE, {"id": actor_id}))
        return await form_page(request, session, name, NeedForm.for_authority(place.get("actor")))

    @app.post("/besoins/nouveau", response_class=HTMLResponse, include_in_schema=False)
    async def _publish(request: Request) -> Response:
        session, name = await authority(request)
        data, form, action, commune_search, territory_search = await submitted(request, session)
        if action.startswith("chercher"):
            return await form_page(
                request, session, name, form, commune_search=commune_search, territory_search=territory_search
            )
        key = data.get("cle")
        try:
            answer = await console.graphql(
                request,
                session,
                PUBLISH,
                {"input": form.graphql_input(), "key": key if isinstance(key, str) and key else None},
            )
        except FormErrors as errors:
            return await form_page(
                request,
                session,
                name,
                form,
                errors=errors,
                commune_search=commune_search,
                territory_search=territory_search,
                status=422,
            )
        return RedirectResponse(f"/besoins/{quote(answer['publishNeed']['id'])}", status_code=303)

    # --- pickers (htmx: suggestions as the person types) ------------------------------------------------------

    @app.get("/besoins/communes", response_class=HTMLResponse, include_in_schema=False)
    async def _communes(request: Request) -> HTMLResponse:
        session, _ = await authority(request)
        search = request.query_params.get("commune_recherche", "").strip()
        chosen = request.query_params.get("communeCode")
        return console.render(
            request,
            "needs_communes.html",
            session,
            commune=pick(chosen) if chosen else None,
            commune_results=await communes(request, session, search),
            commune_search=search,
            field_id=field_id,
        )

    @app.get("/besoins/territoires", response_class=HTMLResponse, include_in_schema=False)
    async def _territories(request: Request) -> HTMLResponse:
        session, _ = await authority(request)
        search = request.query_params.get("territoire_recherche", "").strip()
        chosen = [pick(v) for v in dict.fromkeys(request.query_params.getlist("perimeter.territories"))]
        return console.render(
            request,
            "needs_territories.html",
            session,
            territories=chosen,
            territory_results=await territories(request, session, search),
            territory_search=search,
            field_id=field_id,
        )

    # --- a need's page ---------------------------------------------------------------------------------------

    async def need_page(
        request: Request, session: Session, name: str | None, need_id: str, *, errors: FormErrors | None = None
    ) -> HTMLResponse:
        data = await console.graphql(request, session, NEED_PAGE, {"id": need_id})
        need = data.get("need")
        if need is None:
            raise console.refusal_page(ErrorCode.NOT_FOUND)
        words = await vocabulary(request, session)
        label = {t["code"]: t["label"] for key in words for t in words[key]}
        return console.render(
            request,
            "needs_detail.html",
            session,
            status=422 if errors else 200,
            title=need["title"],
            actor_name=name,
            need=need,
            matches=need["matches"] or [],
            kinds=NEED_KINDS,
            statuses=NEED_STATUSES,
            match_statuses=MATCH_STATUSES,
            closures=CLOSURES,
            selectable=SELECTABLE,
            day=day_of,
            labelled=lambda codes: ", ".join(label.get(code, code) for code in codes),
            errors=errors.fields if errors else {},
            general=(errors.general + list(errors.fields.values())) if errors else [],
        )

    @app.get("/besoins/{need_id}", response_class=HTMLResponse, include_in_schema=False)
    async def _need(request: Request, need_id: str) -> HTMLResponse:
        session, name = await authority(request)
        return await need_page(request, session, name, need_id)

    async def need_action(
        request: Request, session: Session, name: str | None, need_id: str, query: str, variables: dict[str, Any]
    ) -> Response:
        try:
            await console.graphql(request, session, query, variables)
        except FormErrors as errors:
            return await need_page(request, session, name, need_id, errors=errors)
        return RedirectResponse(f"/besoins/{quote(need_id)}", status_code=303)

    @app.post("/besoins/{need_id}/selection", response_class=HTMLResponse, include_in_schema=False)
    async def _select(request: Request, need_id: str) -> Response:
        session, name = await authority(request)
        data = await request.form()
        sent = data.get(CSRF_FIELD)
        console.check_csrf(request, session, sent if isinstance(sent, str) else None)
        match_id, comment = data.get("correspondance"), data.get("commentaire")
        if not isinstance(match_id, str) or not match_id:
            raise ConsolePage(400, "Formulaire incomplet", "Choisissez l'acteur à retenir.")
        comment_text = comment.strip() if isinstance(comment, str) else ""
        return await need_action(
            request, session, name, need_id, SELECT, {"id": match_id, "comment": comment_text or None}
        )

    @app.post("/besoins/{need_id}/cloture", response_class=HTMLResponse, include_in_schema=False)
    async def _close(request: Request, need_id: str) -> Response:
        session, name = await authority(request)
        data = await request.form()
        sent = data.get(CSRF_FIELD)
        console.check_csrf(request, session, sent if isinstance(sent, str) else None)
        outcome, comment = data.get("issue"), data.get("commentaire")
        if outcome not in CLOSURES:
            return await need_page(
                request, session, name, need_id, errors=FormErrors(fields={"issue": "Choisissez l'issue du besoin."})
            )
        comment_text = comment.strip() if isinstance(comment, str) else ""
        return await need_action(
            request, session, name, need_id, CLOSE, {"id": need_id, "status": outcome, "comment": comment_text or None}
        )

    # --- edit -----------------------------------------------------------------------------------------------

    async def editable(request: Request, session: Session, need_id: str) -> dict[str, Any]:
        data = await console.graphql(request, session, NEED_EDIT, {"id": need_id})  # matches: the owner's only
        need = data.get("need")
        if need is None:
            raise console.refusal_page(ErrorCode.NOT_FOUND)
        return dict(need)

    @app.get("/besoins/{need_id}/modifier", response_class=HTMLResponse, include_in_schema=False)
    async def _edit(request: Request, need_id: str) -> HTMLResponse:
        session, name = await authority(request)
        need = await editable(request, session, need_id)
        return await form_page(request, session, name, NeedForm.of_need(need), need=need)

    @app.post("/besoins/{need_id}/modifier", response_class=HTMLResponse, include_in_schema=False)
    async def _update(request: Request, need_id: str) -> Response:
        session, name = await authority(request)
        need = await editable(request, session, need_id)
        _, form, action, commune_search, territory_search = await submitted(request, session)
        if action.startswith("chercher"):
            return await form_page(
                request,
                session,
                name,
                form,
                need=need,
                commune_search=commune_search,
                territory_search=territory_search,
            )
        try:
            changes = form.changes(NeedForm.of_need(need))
            if changes:
                await console.graphql(
                    request, session, UPDATE, {"id": need_id, "input": {**changes, "version": need["version"]}}
                )
        except FormErrors as errors:
            return await form_page(
                request,
                session,
                name,
                form,
                need=need,
                errors=errors,
                commune_search=commune_search,
                territory_search=territory_search,
                status=422,
            )
        return RedirectResponse(f"/besoins/{quote(need_id)}", status_code=303)

    # --- live: the need's matches as they are found and as they change ---------------------------------------

    @app.get("/besoins/{need_id}/flux", include_in_schema=False)
    async def _stream(request: Request, need_id: str) -> Response:
        session = await console.session(request)
        if session is None:
            return Response(status_code=204)  # an EventSource stops reconnecting on 204
        first = await console.graphql(request, session, NEED_MATCHES, {"id": need_id})  # refused: not theirs
        if first.get("need") is None:
            return Response(status_code=204)
        return StreamingResponse(
            live(request, session, need_id, str(first["need"]["status"])),
            media_type="text/event-stream",
            headers={**PAGE_HEADERS, "X-Accel-Buffering": "no"},
        )

    async def live(request: Request, session: Session, need_id: str, need_status: str) -> AsyncIterator[bytes]:
        queue: Feed = asyncio.Queue()
        streams.enter(session, queue)

        async def follow(query: str, field: str) -> None:
            try:
                async for result in subscribe(
                    console.gateway, console.schema, session.caller, query, {"n": need_id}, request=request
                ):
                    if result.errors or not result.data:
                        break
                    await queue.put((field, dict(result.data[field])))
            finally:
                await queue.put(("fin", None))

        tasks = [
            asyncio.create_task(follow(FOUND, "matchFound")),
            asyncio.create_task(follow(UPDATED, "matchUpdated")),
        ]
        csrf = console.csrf_token(request, session)

        statuses: dict[str, str] = {}  # each match on the page, and its status: the counts above the list

        def row(match: dict[str, Any]) -> str:
            statuses[match["id"]] = str(match["status"])
            return (
                console.templates.get_template("needs_match.html").render(
                    match=match,
                    need={"id": need_id, "status": need_status},
                    match_statuses=MATCH_STATUSES,
                    selectable=SELECTABLE,
                    csrf=csrf,
                    csrf_field=CSRF_FIELD,
                )
                + counts()
            )

        def counts() -> str:
            """The counts as the page now shows them, swapped in out of band (htmx's hx-swap-oob)."""
            by_status = Counter(statuses.values())
            return console.templates.get_template("needs_counts.html").render(
                total=len(statuses), interested=by_status["interested"], selected=by_status["selected"], live=True
            )

        try:
            await registered(console, session, need_id, 2)
            # The list as it is once both subscriptions listen: nothing found in between is missed, and what
            # the page already shows is replaced rather than doubled.
            data = await console.graphql(request, session, NEED_MATCHES, {"id": need_id})
            matches = (data.get("need") or {}).get("matches") or []
            known = {m["id"] for m in matches}
            statuses.update((m["id"], str(m["status"])) for m in matches)
            yield sse(
                "liste",
                console.templates.get_template("needs_matches.html").render(
                    matches=matches,
                    need={"id": need_id, "status": need_status},
                    match_statuses=MATCH_STATUSES,
                    selectable=SELECTABLE,
                    csrf=csrf,
                    csrf_field=CSRF_FIELD,
                )
                + counts(),
            )
            while True:
                try:
                    kind, match = await asyncio.wait_for(queue.get(), SESSION_CHECK_S)
                except TimeoutError:
                    kind, match = "", None
                if not await still_signed_in(console, request):
                    break
                if kind == "fin":
                    break
                if match is None:
                    yield b": toujours la\n\n"  # a comment: tells a gone client from a quiet need
                    continue
                if match["id"] in known:
                    yield sse(f"maj-{match['id']}", row(match))
                else:
                    known.add(match["id"])
                    yield sse("trouve", row(match))
            yield sse("fin", "")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            streams.leave(session, queue)


async def still_signed_in(console: Console, request: Request) -> bool:
    """The session is still good (not revoked, not expired); a refused check ends the stream, except the rate."""
    try:
        return await console.session(request) is not None
    except ConsolePage as page:
        return page.status == 429


async def registered(console: Console, session: Session, need_id: str, count: int) -> None:
    """Wait (briefly) until this session's subscriptions of the need listen to the match feed."""
    principal = session.caller.principal
    for _ in range(200):
        mine = [s for s in console.gateway.feed.subscribers if s.principal is principal and s.need_id == need_id]
        if len(mine) >= count:
            return
        await asyncio.sleep(0.01)


def day_of(value: str | None) -> str:
    """A date of the API as a French reader writes it (31/12/2026)."""
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(PARIS).strftime("%d/%m/%Y")
