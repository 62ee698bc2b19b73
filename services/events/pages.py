"""The page an e-mail's cancel link opens: the registration's event and a button (a GET never cancels)."""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from services.common.app import AppSettings, DbPool
from services.events import service
from services.events.model import LIVE_REGISTRATION

router = APIRouter()


@router.get(
    "/registrations/{registration_id}/cancel",
    response_class=HTMLResponse,
    summary="The page an e-mail's cancel link opens (a button; a GET never cancels)",
)
async def cancel_page(
    registration_id: str, pool: DbPool, settings: AppSettings, token: Annotated[str, Query(max_length=64)]
) -> HTMLResponse:
    registration, event_title = await service.registration_by_link(pool, registration_id, token, settings)
    title = html.escape(event_title)
    if registration.status not in LIVE_REGISTRATION:
        text = f"<p>Votre inscription à « {title} » est déjà {html.escape(registration.status.value)}.</p>"
    else:
        action = html.escape(f"/v1/registrations/{registration.id}/cancel?token={token}")
        text = (
            f"<p>Annuler votre inscription à « {title} » ?</p>"
            f'<form method="post" action="{action}"><button type="submit">Annuler mon inscription</button></form>'
        )
    return HTMLResponse(
        f'<!doctype html><html lang="fr"><meta charset="utf-8"><title>Maillage</title><body>{text}</body></html>'
    )
