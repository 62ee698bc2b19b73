"""GraphiQL served from the gateway's own files: a page that loads nothing from another host, under a strict CSP."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static" / "graphiql"
STATIC_PATH = "/static/graphiql"
TEMPLATE = HERE / "graphiql.html"

# Scripts and styles from the gateway only (no inline script), queries and subscriptions to the gateway only.
# Styles may be inline: GraphiQL's editors and popovers set style attributes.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


@lru_cache(maxsize=1)
def page_html() -> str:
    # Relative to /graphql, so that a gateway behind a path prefix still finds its files.
    return TEMPLATE.read_text(encoding="utf-8").replace("{static}", STATIC_PATH.lstrip("/"))


def page() -> HTMLResponse:
    return HTMLResponse(
        page_html(),
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def mount(app: FastAPI) -> None:
    """Serve the page's files under STATIC_PATH."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="graphiql")
