"""Demo needs over the demo actors, with the five actors each should reach first (checked by a test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.contracts import territories


@dataclass(frozen=True)
class DemoNeed:
    """A need an authority of the demo data publishes; `perimeter` codes may say "EPCI" or "DEP" for its own."""

    authority: str  # INSEE code of the demo authority's commune (source id demo-authority-<code>)
    title: str
    description: str
    kind: str
    themes: list[str]
    service_types: list[str]
    perimeter: list[str] = field(default_factory=list)
    radius_km: float | None = None
    qpv_priority: bool = False
    expected_top5: list[str] = field(default_factory=list)  # source ids, best first

    def body(self, location: dict[str, float], days: int = 60) -> dict[str, Any]:
        commune = territories.resolve_commune(self.authority)
        perimeter = [
            {"EPCI": f"EPCI-{commune.epci}", "DEP": f"DEP-{commune.departement}"}.get(code, code)
            for code in self.perimeter
        ]
        return {
            "title": self.title,
            "description": self.description,
            "kind": self.kind,
            "themes": self.themes,
            "service_types": self.service_types,
            "commune_code": self.authority,
            "location": location,
            "perimeter": {"territories": perimeter, "radius_km": self.radius_km},
            "qpv_priority": self.qpv_priority,
            "deadline": (datetime.now(UTC) + timedelta(days=days)).isoformat(),
        }


DEMO_NEEDS: list[DemoNeed] = [
    DemoNeed(
        "25056",
        "Une ressourcerie pour Planoise",
        "Collecte, tri et revente d'objets de seconde main au cœur du quartier, avec des ateliers de réemploi.",
        "partnership",
        ["reemploi", "economie_circulaire"],
        ["fourniture_biens"],
        qpv_priority=True,
        expected_top5=["demo-25056-00", "demo-67447-07", "demo-45234-13", "demo-25056-01", "demo-69123-12"],
    ),
    DemoNeed(
        "25056",
        "Ateliers de réparation de vélos pour les étudiants",
        "Apprendre à réparer son vélo : ateliers mobiles sur les campus, mobilité douce.",
        "procurement",
        ["mobilite", "reparation"],
        ["prestation_service"],
        expected_top5=["demo-25056-11", "demo-25056-01", "demo-69123-12"],
    ),
    DemoNeed(
        "25056",
        "Médiation numérique pour les démarches en ligne",
        "Accompagner les habitants du Grand Besançon dans leurs démarches administratives en ligne.",
        "call_for_projects",
        ["mediation_numerique", "acces_aux_droits"],
        ["formation", "conseil_accompagnement"],
        perimeter=["EPCI"],
        expected_top5=["demo-25056-03", "demo-25056-13", "demo-25056-09"],
    ),
    DemoNeed(
        "25388",
        "Épicerie solidaire pour le Pays de Montbéliard",
        "Ouvrir une épicerie solidaire et organiser la distribution alimentaire aux familles.",
        "partnership",
        ["solidarite_alimentaire"],
        ["fourniture_biens"],
        perimeter=["DEP"],
        expected_top5=["demo-25388-05", "demo-25056-02", "demo-25462-08"],
    ),
    DemoNeed(
        "64102",
        "Entretien des berges de l'Adour par un chantier d'insertion",
        "Débroussaillage et entretien des berges, avec des salariés en parcours d'insertion.",
        "procurement",
        ["iae", "environnement"],
        ["prestation_service"],
        perimeter=["EPCI"],
        expected_top5=["demo-64122-13", "demo-64102-07", "demo-64024-10", "demo-64122-03", "demo-64024-00"],
    ),
    DemoNeed(
        "64102",
        "Repas en circuits courts pour les cantines",
        "Approvisionner les cantines scolaires en produits locaux : circuits courts et alimentation durable.",
        "procurement",
        ["circuits_courts", "alimentation_durable"],
        ["fourniture_biens"],
        radius_km=20,
        expected_top5=["demo-64102-09", "demo-64102-07", "demo-64024-12", "demo-64024-10", "demo-64122-05"],
    ),
    DemoNeed(
        "79191",
        "Accompagner la création de coopératives",
        "Repérer et accompagner des projets de coopératives d'activité et d'emploi sur le territoire.",
        "call_for_projects",
        ["cooperation_territoriale", "emploi_formation"],
        ["conseil_accompagnement"],
        expected_top5=["demo-79191-09", "demo-79191-12", "demo-69123-00"],
    ),
    DemoNeed(
        "79191",
        "Rénovation de logements anciens",
        "Travaux de rénovation et d'amélioration de l'habitat pour des ménages modestes.",
        "quote",
        ["habitat"],
        ["prestation_service"],
        expected_top5=["demo-79191-11"],
    ),
    DemoNeed(
        "63113",
        "Jardins partagés à Saint-Jacques",
        "Créer et animer des jardins partagés au pied des immeubles, agriculture urbaine.",
        "partnership",
        ["agriculture_urbaine", "alimentation_durable"],
        ["prestation_service", "formation"],
        qpv_priority=True,
        expected_top5=["demo-63113-09"],
    ),
    DemoNeed(
        "63113",
        "Centrale solaire citoyenne sur les écoles",
        "Installer des panneaux photovoltaïques sur les toits des écoles avec les habitants : énergie citoyenne.",
        "partnership",
        ["energie"],
        ["partenariat"],
        expected_top5=["demo-63113-11"],
    ),
    DemoNeed(
        "69266",
        "Animations pour les familles du quartier Saint-Jean",
        "Activités parents-enfants et éducation populaire le mercredi et pendant les vacances.",
        "call_for_projects",
        ["education_populaire", "enfance_parentalite"],
        ["prestation_service"],
        perimeter=["EPCI"],
        expected_top5=["demo-69266-00", "demo-69123-03", "demo-69266-01", "demo-69123-04", "demo-69266-07"],
    ),
    DemoNeed(
        "69266",
        "Un festival de quartier",
        "Programmer des spectacles et des ateliers culturels pour la fête du quartier.",
        "procurement",
        ["culture"],
        ["prestation_service"],
        expected_top5=["demo-69266-01"],
    ),
    DemoNeed(
        "67482",
        "Des locaux partagés pour les associations",
        "Un tiers-lieu qui accueille associations et porteurs de projets : locaux, coworking, numérique.",
        "premises",
        ["cooperation_territoriale", "numerique"],
        ["mise_a_disposition_locaux"],
        perimeter=["EPCI"],
        expected_top5=["demo-67482-12", "demo-67218-08", "demo-67482-07", "demo-67218-03", "demo-67447-10"],
    ),
    DemoNeed(
        "67482",
        "Sous-traitance de la mise sous pli",
        "Confier la mise sous pli des courriers municipaux à une structure employant des travailleurs handicapés.",
        "procurement",
        ["handicap", "emploi_formation"],
        ["sous_traitance"],
        expected_top5=["demo-67482-01", "demo-67447-04", "demo-69123-08"],
    ),
    DemoNeed(
        "68224",
        "Aide à domicile pour les personnes âgées",
        "Renforcer l'aide à domicile et le maintien à domicile des personnes âgées isolées.",
        "partnership",
        ["aide_domicile", "vieillissement"],
        ["mise_a_disposition_personnel", "conseil_accompagnement"],
        perimeter=["DEP"],
        expected_top5=["demo-68224-12", "demo-68066-01"],
    ),
    DemoNeed(
        "68224",
        "Mobilités partagées vers les zones d'emploi",
        "Covoiturage et prêt de véhicules pour rejoindre les zones d'activité.",
        "call_for_projects",
        ["mobilite"],
        ["prestation_service"],
        expected_top5=["demo-68224-13", "demo-68224-04", "demo-68224-11", "demo-68224-00"],
    ),
    DemoNeed(
        "45234",
        "Distribution alimentaire à La Source",
        "Des bénévoles et des produits pour l'aide alimentaire aux familles du quartier.",
        "volunteering",
        ["solidarite_alimentaire"],
        ["benevolat"],
        qpv_priority=True,
        expected_top5=["demo-45284-12"],
    ),
    DemoNeed(
        "45284",
        "Recyclerie de meubles",
        "Récupérer, réparer et revendre des meubles : réemploi et économie circulaire.",
        "partnership",
        ["reemploi", "economie_circulaire"],
        ["fourniture_biens"],
        radius_km=15,
        expected_top5=["demo-45284-10", "demo-45234-13", "demo-67447-07", "demo-45284-11", "demo-45284-05"],
    ),
    DemoNeed(
        "45234",
        "Permanences d'accès aux droits",
        "Aider les habitants à faire valoir leurs droits sociaux : permanences et accompagnement.",
        "call_for_projects",
        ["acces_aux_droits"],
        ["conseil_accompagnement"],
        expected_top5=["demo-45284-13", "demo-45234-05", "demo-45234-01"],
    ),
    DemoNeed(
        "25056",
        "Séjours de tourisme solidaire",
        "Organiser des séjours de vacances accessibles aux familles modestes du Doubs.",
        "call_for_projects",
        ["tourisme_solidaire"],
        ["prestation_service"],
        perimeter=["DEP"],
        expected_top5=["demo-25388-02", "demo-25462-05"],
    ),
]
