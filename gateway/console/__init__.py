"""The web console: server-rendered French pages for the members of local authorities and actors, under `/`.

Every page is a client of the public GraphQL contract, run through the same entry as `/graphql`
(`gateway.entry`: authentication and revocation, rate, time, cost), so the console has no private path into the
services. Pages work without JavaScript; htmx (vendored, `static/vendor/`) only makes some of them live. One module
per domain, as the GraphQL types are: `home`, `signin`, `members` (an actor's), and the needs and matches modules
that build on `web`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from strawberry.schema import BaseSchema

from gateway.console import home, inbox, members, needs, profile, signin, web


def mount(app: FastAPI, shared: dict[str, Any], schema: BaseSchema) -> None:
    """Serve the console's pages and files on the gateway's public app."""
    console = web.Console(shared, schema)
    web.install(app, console)
    home.install(app, console)
    needs.install(app, console)
    signin.install(app, console)
    inbox.install(app, console)
    profile.install(app, console)
    members.install(app, console)
