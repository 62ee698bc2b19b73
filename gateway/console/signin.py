"""Signing in and out of the console: a session is one of the gateway's credentials, revoked when the person leaves."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.responses import RedirectResponse

from gateway.auth import revoke_credential
from gateway.console.web import CSRF_FIELD, SESSION_COOKIE, Console


def install(app: FastAPI, console: Console) -> None:
    @app.post("/deconnexion", include_in_schema=False)
    async def _sign_out(
        request: Request, csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None
    ) -> RedirectResponse:
        session = await console.session(request)
        if session is not None:
            console.check_csrf(request, session, csrf)
            # Revoked, not only forgotten by this browser: a copied cookie stops working too, on every replica.
            await revoke_credential(console.gateway.pool, Console.token_id(session.token), revoked_by="sign-out")
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
