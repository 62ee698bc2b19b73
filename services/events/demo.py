"""Demo territorial events of the demo authorities, published by `make run` so that search and feeds show something."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class DemoEvent:
    authority: str  # INSEE code of the organizing demo authority's commune
    title: str
    description: str
    kind: str
    themes: list[str]
    days_ahead: int
    hour: int
    hours: int
    address: str
    capacity: int | None = None
    registration_mode: str = "open"
    online_url: str | None = None

    def body(self, organizer_id: str, location: dict[str, float], today: datetime | None = None) -> dict[str, Any]:
        day = (today or datetime.now(PARIS)) + timedelta(days=self.days_ahead)
        start = day.replace(hour=self.hour, minute=0, second=0, microsecond=0, tzinfo=None)
        return {
            "title": self.title,
            "description": self.description,
            "kind": self.kind,
            "themes": self.themes,
            "organizer_ids": [organizer_id],
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=self.hours)).isoformat(),
            "timezone": "Europe/Paris",
            "place": {"address": self.address, "commune_code": self.authority, "location": location},
            "online_url": self.online_url,
            "capacity": self.capacity,
            "registration_mode": self.registration_mode,
            "publish": True,
        }


DEMO_EVENTS = [
    DemoEvent(
        "25056",
        "Forum de l'ESS du Grand Besançon",
        "Un après-midi pour que collectivités, associations et coopératives du territoire se rencontrent : "
        "stands, ateliers réemploi et insertion, rendez-vous d'affaires.",
        "forum",
        ["reemploi", "iae", "cooperation_territoriale"],
        21,
        13,
        5,
        "Kursaal, place du Théâtre, Besançon",
        capacity=1500,
    ),
    DemoEvent(
        "25056",
        "Contre-la-montre des porteurs de projets",
        "Treize minutes pour présenter votre projet d'utilité sociale devant un jury de financeurs.",
        "meeting",
        ["finance_solidaire", "cooperation_territoriale"],
        35,
        9,
        3,
        "Hôtel de ville, Besançon",
        capacity=13,
        registration_mode="approval",
    ),
    DemoEvent(
        "45234",
        "Atelier réparation vélo et petit électroménager",
        "Venez réparer avec les bénévoles du repair café : outils et pièces sur place.",
        "workshop",
        ["reparation", "mobilite"],
        10,
        14,
        3,
        "Maison des associations, Orléans",
        capacity=25,
    ),
    DemoEvent(
        "63113",
        "Rencontre alimentation durable et circuits courts",
        "Producteurs, épiceries solidaires et restauration collective : comment s'approvisionner localement.",
        "meeting",
        ["alimentation_durable", "circuits_courts"],
        18,
        18,
        2,
        "Salle Leclanché, Clermont-Ferrand",
        capacity=80,
    ),
    DemoEvent(
        "67482",
        "Webinaire : répondre à un marché public avec une clause sociale",
        "Les bases de la commande publique responsable pour les structures d'insertion.",
        "webinar",
        ["iae", "emploi_formation"],
        7,
        11,
        1,
        "Centre administratif, Strasbourg",
        online_url="https://visio.example.org/clauses-sociales",
    ),
    DemoEvent(
        "64102",
        "Visite d'une ressourcerie",
        "Découvrir la collecte, le tri et la revente d'objets de seconde main.",
        "visit",
        ["reemploi"],
        28,
        10,
        2,
        "Zone artisanale, Bayonne",
        capacity=20,
    ),
    DemoEvent(
        "68224",
        "Tiers-lieux et collectivités : coopérer",
        "Journée d'échanges entre tiers-lieux du Haut-Rhin et élus locaux.",
        "conference",
        ["numerique", "culture", "cooperation_territoriale"],
        42,
        9,
        7,
        "Parc des expositions, Mulhouse",
        capacity=200,
    ),
    DemoEvent(
        "79191",
        "Formation : monter une SCIC",
        "Gouvernance, capital et statuts d'une société coopérative d'intérêt collectif.",
        "training",
        ["cooperation_territoriale", "emploi_formation"],
        14,
        9,
        6,
        "Maison de l'ESS, Niort",
        capacity=15,
        registration_mode="approval",
    ),
]
