"""What every console page shares: the session cookie, CSRF tokens, GraphQL through the gateway's entry, templates.

A session is one of the gateway's credentials (a row of `credentials`, its token in an HttpOnly cookie), so it is
checked for revocation on every page exactly as a partner's token is, and revoking it refuses the next request.
Forms carry a CSRF token: bound to the session when there is one (an HMAC of its credential id under the internal
key), else to a random cookie of the browser's (the sign-in forms, before any session exists).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from strawberry.schema import BaseSchema

from gateway.auth import Caller
from gateway.context import Gateway
from gateway.entry import admit, execute
from gateway.guard import Refused
from gateway.sessions import IdleSessions, person_of_subject
from services.common.auth import Role
from services.contracts.errors import ErrorCode

HERE = Path(__file__).resolve().parent
STATIC_PATH = "/static/console"
SESSION_COOKIE = "maillage_session"
BROWSER_COOKIE = "maillage_navigateur"  # the CSRF secret of a browser that has no session yet
CSRF_FIELD = "csrf"

# Pages load the gateway's files only; no inline script or style; forms post to the gateway only.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Sign-in links carry their token in the URL: no page tells another site where it came from.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

ROLE_LABELS = {
    Role.ADMIN: "administration",
    Role.COLLECTIVITY: "collectivité",
    Role.ACTOR: "acteur",
    Role.PARTNER: "partenaire",
}


@dataclass(frozen=True)
class Session:
    """A signed-in person acting for one actor (or an admin): the gateway's caller of its pages."""

    caller: Caller
    token: str

    @property
    def credential_id(self) -> str:
        return self.caller.principal.token_id or ""

    @property
    def role(self) -> Role:
        return self.caller.principal.role

    @property
    def actor_id(self) -> str | None:
        return self.caller.principal.actor_id

    @property
    def person_id(self) -> str | None:
        """The person signed in (None: a credential that is no person's, such as an admin's token)."""
        return person_of_subject(self.caller.principal.subject)


class ConsolePage(Exception):
    """A page that cannot be shown, told to the person in French (status, title, message)."""

    def __init__(self, status: int, title: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.headers = headers or {}


@dataclass
class FormErrors(Exception):
    """Errors of a submitted form, by field (the GraphQL `field` of a BAD_USER_INPUT), shown beside each field."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)


# What a GraphQL refusal means to a person, for the codes that end a page.
REFUSALS: dict[str, tuple[int, str, str]] = {
    ErrorCode.FORBIDDEN: (403, "Accès refusé", "Cette page n'est pas accessible avec le rôle que vous avez ici."),
    ErrorCode.NOT_FOUND: (404, "Page introuvable", "Ce que vous cherchez n'existe pas, ou plus."),
    ErrorCode.UNAVAILABLE: (503, "Service indisponible", "Un service de Maillage ne répond pas. Réessayez bientôt."),
    ErrorCode.RATE_LIMITED: (429, "Trop de demandes", "Vous avez fait beaucoup de demandes : patientez un peu."),
}


class Console:
    """The console's shared state: the gateway (set when the app starts), the schema, the templates."""

    def __init__(self, shared: dict[str, Any], schema: BaseSchema) -> None:
        self.shared = shared
        self.schema = schema
        self.idle = IdleSessions()
        self.background: set[asyncio.Task[None]] = set()  # sign-in e-mails sent after the answer
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals.update(static=STATIC_PATH, csrf_field=CSRF_FIELD, role_labels=ROLE_LABELS, Role=Role)
        self.templates.filters["nombre"] = french_number
        self.templates.filters["territoires"] = lambda perimeter: ", ".join(territory_labels(perimeter or {}))

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.shared["gateway"]
        return gateway

    # --- sessions ------------------------------------------------------------------------------------------

    async def session(self, request: Request) -> Session | None:
        """The request's session (None: signed out, or its session ended); a refusal that is not about the
        session (the credential store down, the rate) ends the page."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            caller = await admit(self.gateway, f"Bearer {token}", client_address(request))
        except Refused as refused:
            if refused.refusal.code == ErrorCode.UNAUTHENTICATED:
                return None  # revoked, expired or unknown: the person signs in again
            raise self.refusal_page(refused.refusal.code, refused.refusal.headers) from None
        if caller is None:
            return None
        session = Session(caller, token)
        if session.person_id is not None and not await self.idle.still_active(
            self.gateway.settings, self.gateway.pool, uuid.UUID(session.credential_id)
        ):
            return None  # unused too long: ended (revoked), the person signs in again
        return session

    async def require_session(self, request: Request) -> Session:
        session = await self.session(request)
        if session is None:
            raise SignInFirst(request.url.path)
        return session

    # --- CSRF ----------------------------------------------------------------------------------------------

    def _mac(self, purpose: str, value: str) -> str:
        key = self.gateway.settings.internal_key.encode()
        digest = hmac.new(key, f"console-{purpose}:{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def csrf_token(self, request: Request, session: Session | None) -> str:
        """The token a form of this page carries: the session's, or (signed out) the browser's, whose secret
        `render` sets as a cookie when the browser has none yet."""
        if session is not None:
            return self._mac("csrf", session.credential_id)
        secret = request.cookies.get(BROWSER_COOKIE) or getattr(request.state, "browser_secret", None)
        if not secret:
            secret = secrets.token_urlsafe(32)
            request.state.browser_secret = secret
        return self._mac("browser", secret)

    def check_csrf(self, request: Request, session: Session | None, sent: str | None) -> None:
        """Refuse a form whose token is missing or not this session's (or this browser's)."""
        if session is not None:
            expected = self._mac("csrf", session.credential_id)
        elif secret := request.cookies.get(BROWSER_COOKIE):
            expected = self._mac("browser", secret)
        else:
            expected = None
        if not sent or expected is None or not hmac.compare_digest(sent, expected):
            raise ConsolePage(
                403,
                "Formulaire refusé",
                "Ce formulaire a expiré ou ne vient pas de cette page. Rechargez la page et recommencez.",
            )

    @staticmethod
    def token_id(token: str) -> uuid.UUID:
        """The credential id (jti) a session token names, read without checking it (the gateway checks on use)."""
        return uuid.UUID(jwt.decode(token, options={"verify_signature": False})["jti"])

    @property
    def secure_cookies(self) -> bool:
        return self.gateway.settings.console_secure_cookies

    def set_session_cookie(self, response: Response, token: str, max_age_s: int) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=max_age_s,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies,
            path="/",
        )

    # --- GraphQL -------------------------------------------------------------------------------------------

    async def graphql(
        self, request: Request, session: Session | None, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run one operation as the session's caller; BAD_USER_INPUT becomes `FormErrors`, other refusals a page."""
        try:
            if session is None:  # anonymous operations pass the same rate limit, keyed by address
                caller = await admit(self.gateway, None, client_address(request))
            else:
                caller = session.caller
            result = await execute(self.gateway, self.schema, caller, query, variables, request=request)
        except Refused as refused:
            raise self.refusal_page(refused.refusal.code, refused.refusal.headers) from None
        if not result.errors:
            return dict(result.data or {})
        form = FormErrors()
        for item in result.errors:
            extensions = item.extensions or {}
            code = extensions.get("code")
            if code == ErrorCode.BAD_USER_INPUT:
                name = str(extensions.get("field") or "")
                if name:
                    form.fields.setdefault(name.removeprefix("input."), item.message)
                else:
                    form.general.append(item.message)
            elif code == ErrorCode.UNAUTHENTICATED:
                raise SignInFirst(request.url.path)
            elif code == ErrorCode.CONFLICT:
                form.general.append(item.message)
            else:
                raise self.refusal_page(str(code or ErrorCode.INTERNAL_SERVER_ERROR))
        raise form

    def refusal_page(self, code: str, headers: dict[str, str] | None = None) -> ConsolePage:
        status, title, message = REFUSALS.get(
            code, (502, "Erreur", "Une erreur est survenue de notre côté. Réessayez, ou prévenez l'administration.")
        )
        return ConsolePage(
            status, title, message, headers={k: v for k, v in (headers or {}).items() if k == "Retry-After"}
        )

    # --- pages ---------------------------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        token = self.csrf_token(request, session)
        body = self.templates.get_template(template).render(
            request=request, session=session, csrf=token, path=request.url.path, **context
        )
        response = HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
        if (fresh := getattr(request.state, "browser_secret", None)) and request.cookies.get(BROWSER_COOKIE) != fresh:
            response.set_cookie(
                BROWSER_COOKIE, fresh, httponly=True, samesite="lax", secure=self.secure_cookies, path="/"
            )
        return response


class SignInFirst(Exception):
    """The page needs a session: go to the sign-in page, and come back here afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def french_number(value: float | int | None) -> str:
    """A number as French readers write it: a decimal comma, no trailing ",0" (48,1113 ; 30 ; 2,5)."""
    if value is None:
        return ""
    text = f"{value:.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return text.replace(".", ",")


TERRITORY_KINDS = {"COM": "commune", "EPCI": "intercommunalité", "DEP": "département", "REG": "région"}


def territory_label(place: dict[str, Any]) -> str:
    """'Rennes Métropole (intercommunalité)': a territory as the pickers and the pages name it."""
    return f"{place['name']} ({TERRITORY_KINDS.get(place['kind'], place['kind'])})"


def territory_labels(perimeter: dict[str, Any]) -> list[str]:
    """A perimeter's territories by name, in its order (a code the API does not name stays a code)."""
    named = {place["code"]: territory_label(place) for place in perimeter.get("places") or []}
    return [named.get(code, code) for code in perimeter.get("territories") or []]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def install(app: FastAPI, console: Console) -> None:
    """The console's files, and how its refusals are shown."""
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(ConsolePage)
    async def _page(request: Request, exc: ConsolePage) -> HTMLResponse:
        session = None if exc.status in (429, 503) else await console.session(request)
        return console.render(
            request, "error.html", session, status=exc.status, headers=exc.headers, title=exc.title, message=exc.message
        )

    @app.exception_handler(SignInFirst)
    async def _sign_in(request: Request, exc: SignInFirst) -> RedirectResponse:
        response = RedirectResponse(f"/connexion?suite={quote(exc.next_path, safe='/')}", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
