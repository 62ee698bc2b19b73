"""The gateway's ASGI app: GraphQL at /graphql, authenticated callers, probes and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from strawberry.fastapi import GraphQLRouter

from gateway.schema import schema
from services.common.app import install_observability
from services.common.auth import get_optional_principal
from services.common.errors import MaillageError, install_error_handlers
from services.common.settings import Settings


def create_gateway_app(settings: Settings) -> FastAPI:
    async def context(request: Request) -> dict[str, Any]:
        try:
            principal, auth_error = await get_optional_principal(request), None
        except MaillageError as exc:
            # Refused by the fields that need a caller, with this reason.
            principal, auth_error = None, exc.detail
        return {"request": request, "principal": principal, "auth_error": auth_error, "settings": settings}

    app = FastAPI(title="Maillage gateway", version="0.1.0")
    app.state.settings = settings
    install_error_handlers(app)
    install_observability(app, "gateway")
    app.include_router(GraphQLRouter(schema, context_getter=context), prefix="/graphql")

    @app.get("/readyz", include_in_schema=False)
    async def _readyz() -> JSONResponse:
        return JSONResponse({"ready": True})

    return app
