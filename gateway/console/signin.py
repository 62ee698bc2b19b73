"""Signing in and out of the console: a link by e-mail, its confirming button, the person's spaces, and sign-out.

The pages are the gateway's own (`gateway.sessions` keeps the links and opens the sessions); what they know of a
person comes from the directory at the moment they ask, with the gateway's service identity. A session is one of the
gateway's credentials: switching space issues a new one and revokes the old, signing out revokes it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Annotated, Any

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from graphql import GraphQLError

from gateway import sessions
from gateway.auth import revoke_credential
from gateway.console.home import actor_name
from gateway.console.web import CSRF_FIELD, SESSION_COOKIE, Console, ConsolePage, Session, client_address
from services.common.rules import EMAIL_MAX_LENGTH, EMAIL_PATTERN
from services.contracts.errors import ErrorCode
from services.contracts.vocabularies import ACTOR_KINDS_BY_CODE

EMAIL = re.compile(EMAIL_PATTERN)
KIND_LABELS = {code: term.label for code, term in ACTOR_KINDS_BY_CODE.items()}

Csrf = Annotated[str | None, Form(alias=CSRF_FIELD)]


async def invalid_link(console: Console, request: Request, session: Session | None) -> HTMLResponse:
    """A link that cannot sign in any more: said plainly, and nothing changed (under the header of the session the
    browser still has, if any, with its actor's name as on every page)."""
    return console.render(
        request,
        "lien_invalide.html",
        session,
        status=410,
        title="Lien expiré ou déjà utilisé",
        actor_name=await actor_name(console, request, session),
    )


async def directory(console: Console, call: Any) -> Any:
    """A call of the directory for the sign-in; its refusal or absence ends the page with a French one."""
    try:
        return await call
    except GraphQLError as exc:
        raise console.refusal_page(str((exc.extensions or {}).get("code") or ErrorCode.UNAVAILABLE)) from None


async def switch_to(
    console: Console,
    request: Request,
    old: Session | None,
    person: dict[str, Any],
    membership: dict[str, Any],
    to: str,
) -> RedirectResponse:
    """A new session for this membership, the browser's old one revoked (a copied cookie stops working too)."""
    settings, pool = console.gateway.settings, console.gateway.pool
    token, lifetime = await sessions.open_session(settings, pool, person, membership)
    if old is not None:
        await revoke_credential(pool, uuid.UUID(old.credential_id), revoked_by="console:switch")
    response = RedirectResponse(to, status_code=303)
    console.set_session_cookie(response, token, lifetime)
    return response


def install(app: FastAPI, console: Console) -> None:
    @app.get("/connexion", response_class=HTMLResponse, include_in_schema=False)
    async def _sign_in_form(request: Request, suite: Annotated[str | None, Query()] = None) -> Response:
        session = await console.session(request)
        if session is not None:
            return RedirectResponse(sessions.safe_next(suite) or "/", status_code=303)
        return console.render(
            request, "connexion.html", None, title="Se connecter", email="", errors={}, suite=sessions.safe_next(suite)
        )

    @app.post("/connexion", response_class=HTMLResponse, include_in_schema=False)
    async def _ask_for_link(
        request: Request,
        csrf: Csrf = None,
        email: Annotated[str, Form(max_length=1000)] = "",
        suite: Annotated[str | None, Form(max_length=1000)] = None,
    ) -> HTMLResponse:
        session = await console.session(request)
        console.check_csrf(request, session, csrf)
        email = email.strip()
        next_path = sessions.safe_next(suite)
        if not email or len(email) > EMAIL_MAX_LENGTH or not EMAIL.match(email):
            message = (
                "Indiquez une adresse e-mail de la forme nom@domaine.fr." if email else "Indiquez votre adresse e-mail."
            )
            return console.render(
                request,
                "connexion.html",
                session,
                status=422,
                title="Se connecter",
                email=email[:320],
                errors={"email": message},
                suite=next_path,
            )
        gateway = console.gateway
        if await sessions.over_limit(gateway.settings, gateway.pool, email, client_address(request)):
            raise ConsolePage(
                429,
                "Trop de demandes",
                "Beaucoup de liens de connexion ont été demandés pour cette adresse, ou depuis votre connexion, "
                "en une heure. Patientez avant d'en demander un autre ; le dernier lien reçu reste valable 15 minutes.",
                headers={"Retry-After": "600"},
            )
        # After the answer: known address or not, the answer is the same, and takes the same time.
        task = asyncio.create_task(
            sessions.send_link_quietly(
                gateway.settings,
                gateway.pool,
                gateway.clients,
                email,
                requested_from=client_address(request),
                next_path=next_path,
            )
        )
        console.background.add(task)
        task.add_done_callback(console.background.discard)
        return console.render(
            request, "connexion_envoyee.html", session, title="Consultez votre messagerie", email=email
        )

    @app.get(sessions.LINK_PATH, response_class=HTMLResponse, include_in_schema=False)
    async def _link_page(request: Request, jeton: Annotated[str, Query(max_length=200)] = "") -> HTMLResponse:
        # Showing the page changes nothing: the button's POST signs in (mail scanners fetch links, and press nothing).
        session = await console.session(request)
        if not jeton or not await sessions.link_is_usable(console.gateway.pool, jeton):
            return await invalid_link(console, request, session)
        return console.render(request, "connexion_lien.html", session, title="Confirmer la connexion", jeton=jeton)

    @app.post(sessions.LINK_PATH, include_in_schema=False)
    async def _sign_in(
        request: Request, csrf: Csrf = None, jeton: Annotated[str, Form(max_length=200)] = ""
    ) -> Response:
        session = await console.session(request)
        console.check_csrf(request, session, csrf)
        gateway = console.gateway
        link = await sessions.peek_link(gateway.pool, jeton) if jeton else None
        if link is None:
            return await invalid_link(console, request, session)
        found = await directory(console, sessions.memberships_after_sign_in(gateway.clients, link))
        person, memberships = found.get("person"), found.get("memberships") or []
        if person is None or not memberships:
            raise ConsolePage(
                403,
                "Aucun espace",
                "Cette adresse n'est membre d'aucune structure de Maillage pour le moment. "
                "Demandez à l'administrateur de votre structure de vous inviter.",
            )
        if await sessions.use_link(gateway.pool, jeton) is None:  # used meanwhile, in another tab: once only
            return await invalid_link(console, request, session)
        # Several spaces: the person sees which one it is in, and may switch.
        to = link["next_path"] or ("/espace" if len(memberships) > 1 else "/")
        return await switch_to(console, request, session, person, memberships[0], to)

    @app.get("/espace", response_class=HTMLResponse, include_in_schema=False)
    async def _spaces(request: Request) -> HTMLResponse:
        session = await console.require_session(request)
        found = await _person(session)
        return console.render(
            request,
            "espace.html",
            session,
            title="Mes espaces",
            person=found["person"],
            memberships=found["memberships"],
            kind_labels=KIND_LABELS,
            actor_name=_actor_name(found, session),
        )

    @app.post("/espace", include_in_schema=False)
    async def _switch(
        request: Request, csrf: Csrf = None, acteur: Annotated[str, Form(max_length=100)] = ""
    ) -> RedirectResponse:
        session = await console.require_session(request)
        console.check_csrf(request, session, csrf)
        found = await _person(session)
        chosen = next((m for m in found["memberships"] if m["actor"]["id"] == acteur), None)
        if chosen is None:
            raise ConsolePage(403, "Accès refusé", "Vous n'êtes pas membre de cette structure.")
        return await switch_to(console, request, session, found["person"], chosen, "/")

    async def _person(session: Session) -> dict[str, Any]:
        if session.person_id is None:
            raise ConsolePage(404, "Page introuvable", "Cette session n'est celle d'aucune personne.")
        found: dict[str, Any] = await directory(
            console, console.gateway.clients.directory.get_person(session.person_id)
        )
        return found

    def _actor_name(found: dict[str, Any], session: Session) -> str | None:
        return next((m["actor"]["name"] for m in found["memberships"] if m["actor"]["id"] == session.actor_id), None)

    @app.post("/deconnexion", include_in_schema=False)
    async def _sign_out(request: Request, csrf: Csrf = None) -> RedirectResponse:
        session = await console.session(request)
        if session is not None:
            console.check_csrf(request, session, csrf)
            # Revoked, not only forgotten by this browser: a copied cookie stops working too, on every replica.
            await revoke_credential(console.gateway.pool, Console.token_id(session.token), revoked_by="sign-out")
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
