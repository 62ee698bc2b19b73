"""Demo data: a reproducible set of a few hundred ESS actors and local authorities in real territories.

Commune codes are real INSEE codes; coordinates are approximate (jittered around the commune
centre) and QPV codes are declared examples, not the official list. `python -m
services.directory.demo` rewrites `data/demo_actors.csv`, which `make run` imports idempotently.
"""

from __future__ import annotations

import csv
import random
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.contracts.events import ActorV1
from services.directory.imports import read_csv_lines, row_to_actor
from services.directory.model import ActorRead, derived_geography, to_contract

DEMO_FILE = Path(__file__).parent / "data" / "demo_actors.csv"


@dataclass(frozen=True)
class Place:
    commune: str  # INSEE code
    name: str
    lat: float
    lon: float
    qpv: tuple[str, ...] = ()  # declared quartiers prioritaires (approximate examples)
    qpv_names: tuple[str, ...] = ()


# Territories of the field; coordinates approximate (commune centre).
TERRITORIES: dict[str, list[Place]] = {
    "Besançon": [
        Place("25056", "Besançon", 47.2378, 6.0241, ("QN02501M", "QN02502M"), ("Planoise", "Clairs-Soleils")),
        Place("25388", "Montbéliard", 47.5097, 6.7986, ("QN02504M",), ("Petite-Hollande",)),
        Place("25462", "Pontarlier", 46.9045, 6.3547),
        Place("39198", "Dole", 47.0925, 5.4898),
    ],
    "Bayonne": [
        Place("64102", "Bayonne", 43.4929, -1.4748, ("QN06401M",), ("Hauts de Sainte-Croix",)),
        Place("64024", "Anglet", 43.4852, -1.5156),
        Place("64122", "Biarritz", 43.4832, -1.5586),
    ],
    "Niort": [Place("79191", "Niort", 46.3237, -0.4588, ("QN07901M",), ("Clou Bouchet",))],
    "Clermont-Ferrand": [
        Place("63113", "Clermont-Ferrand", 45.7772, 3.0870, ("QN06301M",), ("Saint-Jacques",)),
    ],
    "Villeurbanne": [
        Place("69266", "Villeurbanne", 45.7719, 4.8902, ("QN06901M",), ("Saint-Jean",)),
        Place("69123", "Lyon", 45.7640, 4.8357, ("QN06910M",), ("Mermoz",)),
    ],
    "Strasbourg": [
        Place("67482", "Strasbourg", 48.5734, 7.7521, ("QN06701M",), ("Neuhof",)),
        Place("67447", "Schiltigheim", 48.6076, 7.7495),
        Place("67218", "Illkirch-Graffenstaden", 48.5297, 7.7148),
    ],
    "Mulhouse": [
        Place("68224", "Mulhouse", 47.7508, 7.3359, ("QN06801M",), ("Bourtzwiller",)),
        Place("68066", "Colmar", 48.0794, 7.3585),
    ],
    "Saint-Jean-de-Braye": [
        Place("45284", "Saint-Jean-de-Braye", 47.9128, 1.9717),
        Place("45234", "Orléans", 47.9030, 1.9093, ("QN04501M",), ("La Source",)),
    ],
}

# (kind, legal form, name patterns, themes, service types)
PROFILES: list[tuple[str, str, list[str], list[str], list[str]]] = [
    (
        "association",
        "Association loi 1901",
        ["Ressourcerie {place}", "Recyclerie du {quartier}"],
        ["reemploi", "economie_circulaire"],
        ["fourniture_biens", "prestation_service"],
    ),
    (
        "association",
        "Association loi 1901",
        ["Atelier vélo {place}", "Vélo solidaire {quartier}"],
        ["mobilite", "reparation"],
        ["prestation_service", "formation"],
    ),
    (
        "association",
        "Association loi 1901",
        ["Repair café {place}"],
        ["reparation", "reemploi"],
        ["prestation_service", "benevolat"],
    ),
    (
        "association",
        "Association loi 1901",
        ["Jardins partagés du {quartier}", "Ferme urbaine {place}"],
        ["agriculture_urbaine", "alimentation_durable"],
        ["prestation_service", "formation"],
    ),
    (
        "association",
        "Association loi 1901",
        ["Épicerie solidaire {place}", "Banque alimentaire {place}"],
        ["solidarite_alimentaire", "alimentation_durable"],
        ["fourniture_biens", "benevolat"],
    ),
    (
        "association",
        "Association loi 1901",
        ["Centre social {quartier}", "Maison de quartier {quartier}"],
        ["education_populaire", "enfance_parentalite", "acces_aux_droits"],
        ["prestation_service", "partenariat"],
    ),
    (
        "association",
        "Association loi 1901",
        ["Médiation numérique {place}", "Connexions solidaires {place}"],
        ["mediation_numerique", "numerique", "acces_aux_droits"],
        ["formation", "conseil_accompagnement"],
    ),
    (
        "association",
        "Association loi 1901",
        ["Compagnie théâtrale {place}", "Collectif culturel {quartier}"],
        ["culture", "education_populaire"],
        ["prestation_service", "partenariat"],
    ),
    (
        "siae",
        "Atelier et chantier d'insertion",
        ["Chantier d'insertion {place}", "Tremplin {place}"],
        ["iae", "environnement", "emploi_formation"],
        ["prestation_service", "mise_a_disposition_personnel"],
    ),
    (
        "siae",
        "Entreprise d'insertion",
        ["Traiteur solidaire {place}", "Cuisine d'insertion {place}"],
        ["iae", "alimentation_durable", "circuits_courts"],
        ["prestation_service", "fourniture_biens"],
    ),
    (
        "siae",
        "Association intermédiaire",
        ["Intermed {place}", "Services emploi {place}"],
        ["iae", "emploi_formation", "aide_domicile"],
        ["mise_a_disposition_personnel"],
    ),
    (
        "cooperative",
        "SCOP",
        ["SCOP Bâtir ensemble {place}", "Menuiserie coopérative {place}"],
        ["habitat", "economie_circulaire"],
        ["prestation_service", "sous_traitance"],
    ),
    (
        "cooperative",
        "SCIC",
        ["SCIC Énergies citoyennes {place}", "Centrale villageoise {place}"],
        ["energie", "environnement"],
        ["prestation_service", "partenariat"],
    ),
    (
        "cooperative",
        "SCIC",
        ["Coopérative paysanne {place}", "Le panier local {place}"],
        ["circuits_courts", "alimentation_durable"],
        ["fourniture_biens"],
    ),
    (
        "cooperative",
        "CAE",
        ["Coopérative d'activité {place}"],
        ["emploi_formation", "cooperation_territoriale"],
        ["conseil_accompagnement"],
    ),
    (
        "adapted_company",
        "Entreprise adaptée",
        ["Entreprise adaptée {place}", "ESAT {place}"],
        ["handicap", "emploi_formation"],
        ["prestation_service", "sous_traitance", "mise_a_disposition_personnel"],
    ),
    (
        "tiers_lieu",
        "Association loi 1901",
        ["Tiers-lieu La Fabrique {place}", "La Coursive {place}"],
        ["cooperation_territoriale", "numerique", "culture"],
        ["mise_a_disposition_locaux", "partenariat"],
    ),
    ("mutual", "Mutuelle", ["Mutuelle solidaire {place}"], ["sante", "vieillissement"], ["conseil_accompagnement"]),
    ("foundation", "Fondation", ["Fondation pour l'habitat {place}"], ["habitat", "acces_aux_droits"], ["partenariat"]),
    (
        "esus_company",
        "SAS agréée ESUS",
        ["Mobilités partagées {place}", "Tourisme solidaire {place}"],
        ["mobilite", "tourisme_solidaire"],
        ["prestation_service"],
    ),
    (
        "support_network",
        "Association loi 1901",
        ["Fabrique à initiatives {place}", "Incubateur ESS {place}"],
        ["cooperation_territoriale", "finance_solidaire"],
        ["conseil_accompagnement", "formation"],
    ),
]

AUTHORITIES = {
    "25056": ("Ville de Besançon", "Commune"),
    "64102": ("Ville de Bayonne", "Commune"),
    "79191": ("Ville de Niort", "Commune"),
    "63113": ("Ville de Clermont-Ferrand", "Commune"),
    "69266": ("Ville de Villeurbanne", "Commune"),
    "67482": ("Ville de Strasbourg", "Commune"),
    "68224": ("Ville de Mulhouse", "Commune"),
    "45284": ("Ville de Saint-Jean-de-Braye", "Commune"),
    "25388": ("Ville de Montbéliard", "Commune"),
    "45234": ("Ville d'Orléans", "Commune"),
}

FIELDS = [
    "source_id",
    "name",
    "kind",
    "legal_form",
    "commune_code",
    "lat",
    "lon",
    "qpv_code",
    "description",
    "themes",
    "service_types",
    "activities",
    "website",
    "networks",
]


def generate(per_place: int = 14, seed: int = 2026) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for territory, places in TERRITORIES.items():
        for place in places:
            for index in range(per_place):
                kind, legal, patterns, themes, services = PROFILES[(index + len(rows)) % len(PROFILES)]
                in_qpv = bool(place.qpv) and rng.random() < 0.35
                quartier = rng.choice(place.qpv_names) if place.qpv_names else place.name
                name = rng.choice(patterns).format(place=place.name, quartier=quartier)
                area = rng.choice(
                    ["radius:15", "radius:30", f"COM-{place.commune}", "national"]
                    if rng.random() < 0.1
                    else ["radius:15", "radius:30", f"COM-{place.commune}"]
                )
                activities = ";".join(f"{theme}/{services[0]}/{area}" for theme in themes[:2])
                rows.append(
                    {
                        "source_id": f"demo-{place.commune}-{index:02d}",
                        "name": name if index < len(PROFILES) else f"{name} ({index})",
                        "kind": kind,
                        "legal_form": legal,
                        "commune_code": place.commune,
                        "lat": f"{place.lat + rng.uniform(-0.025, 0.025):.5f}",
                        "lon": f"{place.lon + rng.uniform(-0.035, 0.035):.5f}",
                        "qpv_code": rng.choice(place.qpv) if in_qpv else "",
                        "description": f"{name} : acteur de l'ESS à {place.name} ({territory}). "
                        f"Thématiques : {', '.join(themes)}.",
                        "themes": ";".join(themes),
                        "service_types": ";".join(services),
                        "activities": activities,
                        "website": f"https://example.org/{place.commune}/{index}",
                        "networks": "CRESS" if rng.random() < 0.5 else "",
                    }
                )
            if place.commune in AUTHORITIES:
                authority, legal = AUTHORITIES[place.commune]
                rows.append(
                    {
                        "source_id": f"demo-authority-{place.commune}",
                        "name": authority,
                        "kind": "local_authority",
                        "legal_form": legal,
                        "commune_code": place.commune,
                        "lat": f"{place.lat:.5f}",
                        "lon": f"{place.lon:.5f}",
                        "qpv_code": "",
                        "description": f"{authority}, collectivité territoriale engagée pour l'ESS.",
                        "themes": "cooperation_territoriale",
                        "service_types": "partenariat",
                        "activities": "",
                        "website": f"https://example.org/collectivite/{place.commune}",
                        "networks": "RTES",
                    }
                )
    return rows


def write(path: Path = DEMO_FILE) -> int:
    rows = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("# Demo data: real INSEE commune codes; approximate coordinates; example QPV codes.\n")
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def demo_actor_id(source_id: str) -> str:
    """A stable id for a demo actor outside the directory (tests and benchmarks fill replicas with it)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"maillage-demo:{source_id}"))


def demo_actors() -> list[tuple[str, ActorV1]]:
    """The demo actors as the directory would publish them (its own `to_contract`): (source id, actor state)."""
    reader = csv.DictReader(line for line in read_csv_lines(str(DEMO_FILE)) if not line.startswith("#"))
    actors = []
    now = datetime.now(UTC)
    for row in reader:
        actor = row_to_actor(row)
        source_id = actor.source_id or ""
        read = ActorRead.model_validate(
            {
                **actor.model_dump(mode="json"),
                **derived_geography(actor.commune_code),
                "id": demo_actor_id(source_id),
                "version": 1,
                "status": "active",
                "created_at": now,
                "updated_at": now,
            }
        )
        actors.append((source_id, to_contract(read)))
    return actors


if __name__ == "__main__":
    count = write(Path(sys.argv[1]) if len(sys.argv) > 1 else DEMO_FILE)
    print(f"{count} demo actors written")
