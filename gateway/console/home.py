"""The console's home page: what Maillage is for a visitor, and each role's way in for a signed-in member."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from gateway.console.web import Console, Session

ACTOR_NAME = "query($id: ID!) { actor(id: $id) { name } }"


async def actor_name(console: Console, request: Request, session: Session | None) -> str | None:
    """The name of the actor a session acts for, shown in every page's header (None: an admin, or signed out)."""
    if session is None or session.actor_id is None:
        return None
    data = await console.graphql(request, session, ACTOR_NAME, {"id": session.actor_id})
    actor = data.get("actor")
    return str(actor["name"]) if actor else None


def install(app: FastAPI, console: Console) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def _home(request: Request) -> HTMLResponse:
        session = await console.session(request)
        name = await actor_name(console, request, session)
        return console.render(request, "home.html", session, title="Accueil", actor_name=name)
