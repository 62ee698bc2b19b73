"""An actor's members in the console: its admin members see them, invite a person by e-mail and remove one.

Through the public contract (`members`, `inviteMember`, `removeMember`), as every page: the directory decides who may.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.console.web import CSRF_FIELD, Console, FormErrors, Session

MEMBERS = """query($actor: ID!) { actor(id: $actor) { name }
  members(actorId: $actor) { person { id name email } role createdAt } }"""
INVITE = """mutation($actor: ID!, $input: InviteMemberInput!) {
  inviteMember(actorId: $actor, input: $input) { person { id } } }"""
REMOVE = "mutation($actor: ID!, $person: ID!) { removeMember(actorId: $actor, personId: $person) }"

Csrf = Annotated[str | None, Form(alias=CSRF_FIELD)]


def install(app: FastAPI, console: Console) -> None:
    async def page(
        request: Request,
        session: Session,
        *,
        status: int = 200,
        errors: FormErrors | None = None,
        invited: bool = False,
        values: dict[str, str] | None = None,
    ) -> HTMLResponse:
        data = await console.graphql(request, session, MEMBERS, {"actor": session.actor_id})
        return console.render(
            request,
            "membres.html",
            session,
            status=status,
            title="Membres",
            actor_name=(data.get("actor") or {}).get("name"),
            members=data["members"],
            errors=errors.fields if errors else {},
            general=errors.general if errors else [],
            values={"email": "", "name": "", "role": "MEMBER", **(values or {})},
            invited=invited,
        )

    @app.get("/membres", response_class=HTMLResponse, include_in_schema=False)
    async def _members(request: Request, invite: Annotated[str | None, Query()] = None) -> HTMLResponse:
        session = await console.require_session(request)
        return await page(request, session, invited=invite == "envoyee")

    @app.post("/membres", include_in_schema=False)
    async def _invite(
        request: Request,
        csrf: Csrf = None,
        email: Annotated[str, Form(max_length=1000)] = "",
        name: Annotated[str, Form(max_length=1000)] = "",
        role: Annotated[str, Form(max_length=20)] = "MEMBER",
    ) -> Response:
        session = await console.require_session(request)
        console.check_csrf(request, session, csrf)
        errors = FormErrors()
        if not email.strip():
            errors.fields["email"] = "Indiquez l'adresse e-mail de la personne."
        if not name.strip():
            errors.fields["name"] = "Indiquez le nom de la personne."
        if role not in ("MEMBER", "ADMIN"):
            errors.fields["role"] = "Choisissez membre ou administrateur."
        values = {"email": email.strip(), "name": name.strip(), "role": role}
        if not errors.fields:
            try:
                await console.graphql(
                    request,
                    session,
                    INVITE,
                    {"actor": session.actor_id, "input": {"email": email.strip(), "name": name.strip(), "role": role}},
                )
            except FormErrors as refused:
                errors = refused
            else:
                return RedirectResponse("/membres?invite=envoyee", status_code=303)
        return await page(request, session, status=422, errors=errors, values=values)

    @app.post("/membres/retirer", include_in_schema=False)
    async def _remove(
        request: Request, csrf: Csrf = None, personne: Annotated[str, Form(max_length=100)] = ""
    ) -> RedirectResponse:
        session = await console.require_session(request)
        console.check_csrf(request, session, csrf)
        await console.graphql(request, session, REMOVE, {"actor": session.actor_id, "person": personne})
        return RedirectResponse("/membres", status_code=303)
