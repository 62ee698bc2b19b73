"""An actor member's inbox: the needs it was matched to (with the reasons), a need's page, and its answer to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.console.home import actor_name
from gateway.console.web import CSRF_FIELD, Console, ConsolePage, FormErrors, Session
from services.contracts.errors import ErrorCode

# The filters a person picks from, in French, each the API's statuses (`MatchStatus`) it stands for.
FILTERS: dict[str, tuple[str, list[str]]] = {
    "a-traiter": ("À traiter", ["PROPOSED", "NOTIFIED", "VIEWED"]),
    "interesse": ("Intéressé", ["INTERESTED"]),
    "decline": ("Décliné", ["DECLINED"]),
    "retenu": ("Retenu", ["SELECTED"]),
    "clos": ("Clos", ["WITHDRAWN"]),
}
# A match's status (`Match.status`) as a person reads it, and the badge class of console.css that shows it.
STATUS_LABELS = {
    "proposed": ("À traiter", "nouveau"),
    "notified": ("À traiter", "nouveau"),
    "viewed": ("À traiter (vu)", "vu"),
    "interested": ("Intéressé", "interesse"),
    "declined": ("Décliné", "decline"),
    "selected": ("Retenu", "selectionne"),
    "withdrawn": ("Clos", "retire"),
}
# What the actor may still answer: the matching service's pending statuses (an interested actor may change its mind).
ANSWERABLE = frozenset({"proposed", "notified", "viewed", "interested"})
UNSEEN = frozenset({"proposed", "notified"})
NEED_KINDS = {
    "partnership": "Partenariat",
    "procurement": "Marché public",
    "quote": "Demande de devis",
    "call_for_projects": "Appel à projets",
    "volunteering": "Bénévolat",
    "premises": "Locaux",
}
NEED_STATUSES = {
    "published": "Ouvert",
    "closed": "Clos",
    "fulfilled": "Pourvu",
    "cancelled": "Annulé",
    "expired": "Expiré",
}
# The usual reasons to decline, offered as choices; the one picked (and the free text) is the API's comment.
DECLINE_REASONS = {
    "hors-champ": "Ce besoin ne correspond pas à nos activités",
    "capacite": "Nous n'avons pas la capacité en ce moment",
    "delais": "Les délais sont trop courts pour nous",
    "territoire": "Le lieu est trop éloigné de notre territoire",
    "budget": "Le budget ne nous permet pas de répondre",
}
MONTHS = [
    *("janvier", "février", "mars", "avril", "mai", "juin"),
    *("juillet", "août", "septembre", "octobre", "novembre", "décembre"),
]

INBOX = """
query($id: ID!, $statuses: [MatchStatus!]) {
  actor(id: $id) {
    name
    matches(first: 100, statuses: $statuses) {
      id score status createdAt
      reasons { code text }
      need { id title deadline communeCode communeName status collectivity { name } }
    }
  }
}
"""
MATCH = """
query($id: ID!) {
  match(id: $id) {
    id actorId score status responseComment createdAt updatedAt
    reasons { code text weight }
    need {
      id title description kind themes serviceTypes communeCode communeName deadline status budgetMin budgetMax
      qpvPriority perimeter { territories radiusKm places { code kind name } }
      collectivity { name }
    }
  }
  themes { code label }
  serviceTypes { code label }
}
"""
VIEW = "mutation($id: ID!) { markMatchViewed(id: $id) { status } }"
RESPOND = """
mutation($id: ID!, $response: MatchResponse!, $comment: String) {
  respondToMatch(id: $id, response: $response, comment: $comment) { id status responseComment }
}
"""
# The API's messages are for programs; a person reads these, beside the field they name.
FIELD_MESSAGES = {
    ("declined", "comment"): "Dites pourquoi vous déclinez : choisissez une raison ou écrivez-la.",
}


def french_date(value: str | None) -> str:
    """An ISO date-time as people write it in France: 12 mars 2027."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value)
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"


def score_percent(score: float) -> str:
    return f"{round(score * 100)} %"


def place_of(need: dict[str, Any]) -> str:
    """The need's commune by its name (its INSEE code for a code the reference data no longer knows)."""
    return str(need.get("communeName") or f"Commune INSEE {need['communeCode']}")


def require_actor(session: Session) -> str:
    """The actor a session acts for: these pages are an actor member's (an admin acts for none)."""
    if session.actor_id is None:
        raise ConsolePage(403, "Accès refusé", "Ces pages sont celles d'un membre d'une structure.")
    return session.actor_id


def install(app: FastAPI, console: Console) -> None:
    @app.get("/propositions", response_class=HTMLResponse, include_in_schema=False)
    async def _inbox(request: Request, statut: str | None = None) -> HTMLResponse:
        session = await console.require_session(request)
        actor_id = require_actor(session)
        chosen = statut if statut in FILTERS else None
        statuses = FILTERS[chosen][1] if chosen else None
        data = await console.graphql(request, session, INBOX, {"id": actor_id, "statuses": statuses})
        actor = data.get("actor")
        if actor is None:
            raise console.refusal_page(ErrorCode.NOT_FOUND)
        # The API lists them best first; an inbox reads newest first.
        matches = sorted(actor.get("matches") or [], key=lambda match: match["createdAt"], reverse=True)
        return console.render(
            request,
            "inbox_list.html",
            session,
            title="Besoins proposés" + (f" — {FILTERS[chosen][0]}" if chosen else ""),
            actor_name=actor["name"],
            matches=matches,
            filters=FILTERS,
            chosen=chosen,
            labels=STATUS_LABELS,
            date=french_date,
            percent=score_percent,
            place=place_of,
        )

    async def load_match(request: Request, session: Session, match_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The match and the vocabularies; a match that is not this actor's is refused like an unknown one."""
        actor_id = require_actor(session)
        try:
            data = await console.graphql(request, session, MATCH, {"id": match_id})
        except FormErrors:  # not an id at all
            data = {}
        match = data.get("match")
        # The API answers null for a match the caller may not read (another actor's): nothing tells it exists.
        if match is None or match["actorId"] != actor_id or match.get("need") is None:
            raise ConsolePage(
                404,
                "Proposition introuvable",
                "Cette proposition n'existe pas, ou elle a été faite à une autre structure que la vôtre.",
            )
        return match, data

    async def match_page(
        request: Request,
        session: Session,
        match: dict[str, Any],
        data: dict[str, Any],
        *,
        status: int = 200,
        errors: FormErrors | None = None,
        answering: str | None = None,
        sent: dict[str, str] | None = None,
        done: str | None = None,
    ) -> HTMLResponse:
        themes = {item["code"]: item["label"] for item in data.get("themes") or []}
        service_types = {item["code"]: item["label"] for item in data.get("serviceTypes") or []}
        need = match["need"]
        return console.render(
            request,
            "inbox_match.html",
            session,
            status=status,
            title=need["title"],
            actor_name=await actor_name(console, request, session),
            match=match,
            need=need,
            themes=themes,
            service_types=service_types,
            kinds=NEED_KINDS,
            need_statuses=NEED_STATUSES,
            labels=STATUS_LABELS,
            answerable=match["status"] in ANSWERABLE and need["status"] == "published",
            reasons=DECLINE_REASONS,
            errors=errors or FormErrors(),
            answering=answering,
            sent=sent or {},
            done=done,
            date=french_date,
            percent=score_percent,
            place=place_of,
        )

    @app.get("/propositions/{match_id}", response_class=HTMLResponse, include_in_schema=False)
    async def _match(request: Request, match_id: str, envoye: str | None = None) -> HTMLResponse:
        session = await console.require_session(request)
        match, data = await load_match(request, session, match_id)
        if match["status"] in UNSEEN:
            # Opening the page is the actor seeing the need: its authority's open need page shows "Vu" at once.
            viewed = await console.graphql(request, session, VIEW, {"id": match["id"]})
            match = {**match, "status": viewed["markMatchViewed"]["status"]}
        done = envoye if envoye in ("interested", "declined") else None
        return await match_page(request, session, match, data, done=done)

    @app.post("/propositions/{match_id}", include_in_schema=False)
    async def _answer(request: Request, match_id: str) -> Response:
        session = await console.require_session(request)
        form = await request.form()
        console.check_csrf(request, session, _text(form.get(CSRF_FIELD)))
        response = _text(form.get("reponse"))
        sent = {name: _text(form.get(name)) or "" for name in ("commentaire", "raison", "precision")}
        if response not in ("interested", "declined"):
            raise ConsolePage(400, "Réponse inconnue", "Choisissez « intéressé » ou « décliné » sur la page du besoin.")
        comment = _comment(response, sent)
        try:
            await console.graphql(
                request,
                session,
                RESPOND,
                {"id": match_id, "response": response.upper(), "comment": comment},
            )
        except FormErrors as errors:
            match, data = await load_match(request, session, match_id)
            errors.fields = {
                name: FIELD_MESSAGES.get((response, name), message) for name, message in errors.fields.items()
            }
            if errors.general and not errors.fields:
                # A CONFLICT: the need closed, or the match moved on, since the page was shown.
                errors.general = ["Cette proposition ne peut plus recevoir de réponse : rechargez la page."]
            return await match_page(
                request, session, match, data, status=422, errors=errors, answering=response, sent=sent
            )
        return RedirectResponse(f"/propositions/{quote(match_id)}?envoye={response}#resultat", status_code=303)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _comment(response: str, sent: dict[str, str]) -> str | None:
    """The API's comment: what the actor wrote, after the reason it picked when it declines (None: nothing)."""
    if response == "interested":
        return sent["commentaire"].strip() or None
    parts = [DECLINE_REASONS[sent["raison"]]] if sent["raison"] in DECLINE_REASONS else []
    if precision := sent["precision"].strip():
        parts.append(precision)
    return " — ".join(parts) or None
