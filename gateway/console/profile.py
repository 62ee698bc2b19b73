"""An actor member's own profile: shown, and edited through `updateActor` with the fields that changed only.

The form's field names are the GraphQL input's paths (`contact.email`, `activities.0.area.territories`), so an
error the API names lands beside its field. Areas take territories picked by name: a search button re-renders
the form with the results (no JavaScript needed), and htmx asks `/profil/territoires` for them as one types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData, QueryParams

from gateway.console.inbox import require_actor
from gateway.console.web import CSRF_FIELD, TERRITORY_KINDS, Console, ConsolePage, FormErrors, Session

PROFILE = """
query($id: ID!) {
  actor(id: $id) {
    id version name description website kind communeName
    contact { name email phone }
    themes serviceTypes
    activities { theme serviceType area { kind territories radiusKm } }
  }
  themes { code label }
  serviceTypes { code label }
}
"""
UPDATE = "mutation($id: ID!, $input: UpdateActorInput!) { updateActor(id: $id, input: $input) { id version } }"
TERRITORIES = """
query($search: String!) { territories(search: $search, first: 8) { code kind name population } }
"""
AREA_KINDS = {
    "territories": "Des territoires précis",
    "radius": "Un rayon autour de notre adresse",
    "national": "Toute la France",
}
ACTIVITY = re.compile(r"^activities\.(\d+)(?:\.(.+))?$")
MAX_ACTIVITIES = 30

# What the directory's rules mean to a person, by the field they name (the API's messages are for programs).
MESSAGES = {
    "name": "Le nom compte de 2 à 200 caractères.",
    "description": "La description est trop longue.",
    "website": "Une adresse web complète, commençant par https://.",
    "contact.name": "Le nom du contact compte au plus 200 caractères.",
    "contact.email": "Une adresse e-mail de la forme nom@exemple.fr.",
    "contact.phone": "Un numéro de téléphone : des chiffres, espaces, points ou tirets, un + au début.",
    "themes": "Choisissez des thèmes de la liste.",
    "serviceTypes": "Choisissez des types de prestation de la liste.",
    "theme": "Choisissez le thème de cette activité.",
    "serviceType": "Choisissez le type de prestation de cette activité.",
    "area.territories": "Choisissez au moins un territoire : cherchez-le par son nom.",
    "area.radiusKm": "Indiquez un rayon en kilomètres, plus grand que 0.",
    "search": "Tapez au moins 2 lettres du nom d'un territoire.",
}
STALE = (
    "Votre profil a été modifié depuis que vous avez ouvert cette page (dans un autre onglet, ou par une autre "
    "personne de votre structure). Rechargez la page pour partir de la version actuelle, puis refaites vos changements."
)


@dataclass
class ActivityRow:
    """One activity as the form shows it (strings, as typed), with the territories it names and their names."""

    theme: str = ""
    service_type: str = ""
    area_kind: str = "territories"
    territories: list[str] = field(default_factory=list)
    radius_km: str = ""
    search: str = ""
    found: list[dict[str, Any]] | None = None  # the territories a search found, to pick from

    @property
    def blank(self) -> bool:
        return not self.theme and not self.service_type and not self.territories and not self.radius_km


@dataclass
class ProfileForm:
    """The profile as the form holds it; `changes` makes the API's input of what differs from the stored actor."""

    version: int
    name: str = ""
    description: str = ""
    website: str = ""
    contact: dict[str, str] = field(default_factory=lambda: {"name": "", "email": "", "phone": ""})
    themes: list[str] = field(default_factory=list)
    service_types: list[str] = field(default_factory=list)
    activities: list[ActivityRow] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # territory code → name, when a search told it

    @staticmethod
    def of_actor(actor: dict[str, Any]) -> ProfileForm:
        contact = actor.get("contact") or {}
        return ProfileForm(
            version=actor["version"],
            name=actor["name"],
            description=actor["description"] or "",
            website=actor["website"] or "",
            contact={key: contact.get(key) or "" for key in ("name", "email", "phone")},
            themes=list(actor["themes"]),
            service_types=list(actor["serviceTypes"]),
            activities=[
                ActivityRow(
                    theme=activity["theme"],
                    service_type=activity["serviceType"],
                    area_kind=activity["area"]["kind"].lower(),
                    territories=list(activity["area"]["territories"]),
                    radius_km=_number(activity["area"]["radiusKm"]),
                )
                for activity in actor["activities"]
            ],
        )

    @staticmethod
    def of_form(form: FormData) -> ProfileForm:
        def text(name: str) -> str:
            value = form.get(name)
            return value.strip() if isinstance(value, str) else ""

        def texts(name: str) -> list[str]:
            return list(dict.fromkeys(v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()))

        try:
            version = int(text("version"))
        except ValueError:
            raise ConsolePage(400, "Formulaire incomplet", "Rechargez la page du profil et recommencez.") from None
        rows = []
        for index in range(min(_row_count(form), MAX_ACTIVITIES + 1)):
            prefix = f"activities.{index}."
            if text(prefix + "remove"):
                continue  # the person removed it
            rows.append(
                ActivityRow(
                    theme=text(prefix + "theme"),
                    service_type=text(prefix + "serviceType"),
                    area_kind=text(prefix + "area.kind") or "territories",
                    territories=texts(prefix + "area.territories"),
                    radius_km=text(prefix + "area.radiusKm"),
                    search=text(prefix + "search"),
                )
            )
        names = {
            key.removeprefix("nom."): value
            for key, value in form.multi_items()
            if key.startswith("nom.") and isinstance(value, str)
        }
        return ProfileForm(
            version=version,
            name=text("name"),
            description=text("description"),
            website=text("website"),
            contact={key: text(f"contact.{key}") for key in ("name", "email", "phone")},
            themes=texts("themes"),
            service_types=texts("serviceTypes"),
            activities=rows,
            names=names,
        )

    def activities_input(self) -> tuple[list[dict[str, Any]], list[int], FormErrors]:
        """The activities to send (blank rows left out), the form row each comes from, and the radii that are
        not numbers (a GraphQL Float refuses them before any field is named)."""
        sent: list[dict[str, Any]] = []
        rows: list[int] = []
        errors = FormErrors()
        for index, row in enumerate(self.activities):
            if row.blank:
                continue
            area: dict[str, Any] = {"kind": row.area_kind.upper()}
            if row.area_kind == "territories":
                area["territories"] = row.territories
            if row.area_kind == "radius":
                try:
                    area["radiusKm"] = float(row.radius_km.replace(",", ".")) if row.radius_km else None
                except ValueError:
                    errors.fields[f"activities.{index}.area.radiusKm"] = MESSAGES["area.radiusKm"]
            sent.append({"theme": row.theme, "serviceType": row.service_type, "area": area})
            rows.append(index)
        return sent, rows, errors

    def changes(self, stored: ProfileForm) -> tuple[dict[str, Any], list[int], FormErrors]:
        """The input of `updateActor`: the fields that differ from `stored` only (and the version edited)."""
        changes: dict[str, Any] = {}
        for name in ("name", "description"):
            if getattr(self, name) != getattr(stored, name):
                changes[name] = getattr(self, name)
        if self.website != stored.website:
            changes["website"] = self.website or None  # emptied: null removes it (an empty one is no address)
        if self.contact != stored.contact:
            # Replaced whole by the directory: an emptied part is left out, so it is removed.
            changes["contact"] = {key: value or None for key, value in self.contact.items()}
        if sorted(self.themes) != sorted(stored.themes):
            changes["themes"] = self.themes
        if sorted(self.service_types) != sorted(stored.service_types):
            changes["serviceTypes"] = self.service_types
        mine, rows, errors = self.activities_input()
        theirs, _, _ = stored.activities_input()
        if mine != theirs:
            changes["activities"] = mine
        if changes:
            changes["version"] = self.version
        return changes, rows, errors


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value).replace(".", ",")


def _row_count(form: FormData) -> int:
    indexes = [int(match.group(1)) for key in form if (match := ACTIVITY.match(key))]
    return max(indexes) + 1 if indexes else 0


def french(name: str, message: str) -> str:
    """The message shown beside a field the API named."""
    if (activity := ACTIVITY.match(name)) and activity.group(2):
        name = activity.group(2)
    return MESSAGES.get(name, f"Valeur refusée : {message}")


def errors_on_rows(errors: FormErrors, rows: list[int]) -> FormErrors:
    """The API names the activities it was sent by their place in that list; the form names its own rows."""
    fields = {}
    for name, message in errors.fields.items():
        activity = ACTIVITY.match(name)
        if activity and int(activity.group(1)) < len(rows):
            rest = f".{activity.group(2)}" if activity.group(2) else ""
            name = f"activities.{rows[int(activity.group(1))]}{rest}"
        fields[name] = french(name, message)
    return FormErrors(fields=fields, general=errors.general)


def anchor(name: str) -> str:
    """The id of the element an error's summary links to."""
    return "champ-" + name.replace(".", "-")


def install(app: FastAPI, console: Console) -> None:
    async def load(request: Request, session: Session) -> tuple[dict[str, Any], dict[str, Any]]:
        actor_id = require_actor(session)
        data = await console.graphql(request, session, PROFILE, {"id": actor_id})
        if data.get("actor") is None:
            raise ConsolePage(404, "Profil introuvable", "La structure pour laquelle vous agissez n'existe plus.")
        return data["actor"], data

    async def search(request: Request, session: Session, row: ActivityRow, index: int, errors: FormErrors) -> None:
        try:
            found = await console.graphql(request, session, TERRITORIES, {"search": row.search})
        except FormErrors:
            errors.fields[f"activities.{index}.search"] = MESSAGES["search"]
            return
        row.found = [item for item in found["territories"] if item["code"] not in row.territories]

    def page(
        request: Request,
        session: Session,
        actor: dict[str, Any],
        data: dict[str, Any],
        form: ProfileForm,
        *,
        status: int = 200,
        errors: FormErrors | None = None,
        notice: str | None = None,
        stale: bool = False,
    ) -> HTMLResponse:
        if not any(row.blank for row in form.activities):
            form.activities.append(ActivityRow())  # always room for one more
        return console.render(
            request,
            "profile_edit.html",
            session,
            status=status,
            title="Mon profil",
            actor_name=actor["name"],
            actor=actor,
            form=form,
            themes=data.get("themes") or [],
            service_types=data.get("serviceTypes") or [],
            theme_labels={item["code"]: item["label"] for item in data.get("themes") or []},
            area_kinds=AREA_KINDS,
            territory_kinds=TERRITORY_KINDS,
            errors=errors or FormErrors(),
            anchor=anchor,
            notice=notice,
            stale=stale,
        )

    @app.get("/profil", response_class=HTMLResponse, include_in_schema=False)
    async def _show(request: Request, enregistre: str | None = None) -> HTMLResponse:
        session = await console.require_session(request)
        actor, data = await load(request, session)
        notice = "Votre profil est enregistré." if enregistre else None
        return page(request, session, actor, data, ProfileForm.of_actor(actor), notice=notice)

    @app.post("/profil", include_in_schema=False)
    async def _edit(request: Request) -> Response:
        session = await console.require_session(request)
        submitted = await request.form()
        console.check_csrf(request, session, _text(submitted.get(CSRF_FIELD)))
        form = ProfileForm.of_form(submitted)
        actor, data = await load(request, session)
        action = _text(submitted.get("action")) or "enregistrer"
        if action.startswith("chercher-"):  # a territory search, without JavaScript: the form comes back with it
            errors = FormErrors()
            index = int(action.removeprefix("chercher-")) if action.removeprefix("chercher-").isdigit() else -1
            if 0 <= index < len(form.activities):
                await search(request, session, form.activities[index], index, errors)
            return page(request, session, actor, data, form, errors=errors)
        if action == "ajouter":
            form.activities.append(ActivityRow())
            return page(request, session, actor, data, form)
        if form.version != actor["version"]:
            return page(request, session, actor, data, form, status=409, stale=True)
        changes, rows, local = form.changes(ProfileForm.of_actor(actor))
        if local.fields:
            return page(request, session, actor, data, form, status=422, errors=local)
        if not changes:
            nothing = "Rien n'a changé : il n'y avait rien à enregistrer."
            return page(request, session, actor, data, form, notice=nothing)
        try:
            await console.graphql(request, session, UPDATE, {"id": actor["id"], "input": changes})
        except FormErrors as errors:
            current, _ = await load(request, session)
            if current["version"] != form.version:  # CONFLICT: someone saved in between
                return page(request, session, current, data, form, status=409, stale=True)
            return page(request, session, actor, data, form, status=422, errors=errors_on_rows(errors, rows))
        return RedirectResponse("/profil?enregistre=1", status_code=303)

    @app.get("/profil/territoires", response_class=HTMLResponse, include_in_schema=False)
    async def _suggestions(request: Request, activite: int = 0) -> HTMLResponse:
        """The territories named like what is typed in an activity's search field: a fragment htmx puts under it."""
        session = await console.require_session(request)
        row = ActivityRow(search=_query(request.query_params, f"activities.{activite}.search"))
        errors = FormErrors()
        if len(row.search) >= 2:
            await search(request, session, row, activite, errors)
        return console.render(
            request,
            "profile_territories.html",
            session,
            index=activite,
            row=row,
            errors=errors,
            territory_kinds=TERRITORY_KINDS,
            anchor=anchor,
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _query(params: QueryParams, name: str) -> str:
    return (params.get(name) or "").strip()
