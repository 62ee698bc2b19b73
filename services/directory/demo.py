"""Demo data: a reproducible set of a few hundred ESS actors and local authorities in real territories.

Commune codes are real INSEE codes; coordinates are approximate (jittered around the commune
centre) and QPV codes are declared examples, not the official list. Each actor describes itself
in its own words, as a CRESS officer would write it (what it does, for whom, how): matching reads
those words to confirm a candidate that lacks some of a need's themes, so a description states
the actor's themes and service types and nothing it does not do. `python -m
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


@dataclass(frozen=True)
class Profile:
    """A kind of actor of the field: its name patterns, each with the descriptions such an actor gives of itself."""

    kind: str
    legal_form: str
    # (name pattern, descriptions): one or two sentences a CRESS officer would write of what such an actor does,
    # several per pattern so that two actors of one kind do not read the same.
    patterns: tuple[tuple[str, tuple[str, ...]], ...]
    themes: tuple[str, ...]
    service_types: tuple[str, ...]


PROFILES: list[Profile] = [
    Profile(
        "association",
        "Association loi 1901",
        (
            (
                "Ressourcerie {place}",
                (
                    "Ressourcerie : collecte des objets dont les habitants n'ont plus l'usage, tri, remise en état et"
                    " revente à petits prix dans sa boutique, avec des ateliers de sensibilisation au réemploi.",
                    "Ressourcerie de quartier : meubles, vaisselle, livres et vêtements donnés, valorisés puis revendus"
                    " en boutique solidaire ; débarras et collectes à domicile sur rendez-vous.",
                    "Collecte, tri et revente d'objets de seconde main ; la ressourcerie tient aussi un point de"
                    " collecte en déchèterie pour sauver ce qui peut resservir.",
                ),
            ),
            (
                "Recyclerie du {quartier}",
                (
                    "Recyclerie : les habitants déposent meubles, jouets et électroménager, que l'équipe répare et"
                    " revend à petits prix ; ateliers de réparation et de relooking de meubles.",
                    "Recyclerie de proximité : dons d'objets du quotidien, revente en boutique et animations sur la"
                    " réduction des déchets dans les écoles et les fêtes de quartier.",
                    "Boutique de réemploi tenue par des bénévoles et des salariés : vêtements, livres et mobilier de"
                    " seconde main, et un atelier couture pour redonner vie aux textiles.",
                ),
            ),
        ),
        ("reemploi", "economie_circulaire"),
        ("fourniture_biens", "prestation_service"),
    ),
    Profile(
        "association",
        "Association loi 1901",
        (
            (
                "Atelier vélo {place}",
                (
                    "Atelier vélo participatif : chacun apprend à réparer son vélo avec l'aide d'un mécanicien, et des"
                    " vélos d'occasion remis en état sont vendus à petit prix.",
                    "Atelier d'autoréparation de vélos : permanences ouvertes à tous, ateliers mobiles dans les"
                    " quartiers et les établissements scolaires, vélo-école pour les adultes.",
                    "Récupère et remet en état des vélos abandonnés, les revend à petit prix et forme les habitants à"
                    " l'entretien de leur vélo lors de séances de mécanique.",
                ),
            ),
            (
                "Vélo solidaire {quartier}",
                (
                    "Vélos remis en état prêtés ou vendus à petit prix aux personnes qui en ont besoin pour travailler,"
                    " et cours de mécanique pour apprendre à les entretenir.",
                    "Atelier de réparation de vélos et vélo-école : l'association remet en selle les habitants qui"
                    " n'ont jamais appris à rouler, adultes compris.",
                    "Atelier vélo de quartier : réparation accompagnée, pièces d'occasion, et balades pour découvrir"
                    " les pistes cyclables de l'agglomération.",
                ),
            ),
        ),
        ("mobilite", "reparation"),
        ("prestation_service", "formation"),
    ),
    Profile(
        "association",
        "Association loi 1901",
        (
            (
                "Repair café {place}",
                (
                    "Ateliers mensuels où des bénévoles aident les habitants à réparer appareils, vêtements et vélos.",
                    "Repair café : une fois par mois, des bricoleurs bénévoles accueillent ceux qui apportent une"
                    " lampe, un grille-pain ou une chaise bancale, et réparent avec eux plutôt que de jeter.",
                    "Café réparation animé par des bénévoles : petit électroménager, couture et informatique ; on y"
                    " apprend à réparer soi-même et à faire durer ses objets.",
                ),
            ),
        ),
        ("reparation", "reemploi"),
        ("prestation_service", "benevolat"),
    ),
    Profile(
        "association",
        "Association loi 1901",
        (
            (
                "Jardins partagés du {quartier}",
                (
                    "Jardins partagés au pied des immeubles : parcelles cultivées par les habitants, ateliers de"
                    " jardinage au naturel et compost collectif.",
                    "Association de jardins collectifs : elle aide les habitants à créer et animer des potagers en"
                    " ville et forme des jardiniers bénévoles.",
                    "Jardin partagé et pédagogique : accueil des écoles et des centres de loisirs, cultures de légumes"
                    " et d'aromatiques, fêtes des récoltes avec le quartier.",
                ),
            ),
            (
                "Ferme urbaine {place}",
                (
                    "Ferme urbaine en maraîchage biologique : légumes vendus en direct aux habitants, accueil de"
                    " classes et formations au jardinage.",
                    "Micro-ferme sur une friche de la ville : poules, ruches et potager, chantiers participatifs et"
                    " formations à l'agriculture urbaine pour les habitants et les services techniques.",
                    "Ferme urbaine qui cultive sur les toits et les délaissés urbains, anime des ateliers"
                    " d'alimentation durable et accompagne les projets de jardins des bailleurs sociaux.",
                ),
            ),
        ),
        ("agriculture_urbaine", "alimentation_durable"),
        ("prestation_service", "formation"),
    ),
    Profile(
        "association",
        "Association loi 1901",
        (
            (
                "Épicerie solidaire {place}",
                (
                    "Épicerie solidaire : produits frais et d'épicerie à petits prix pour les familles orientées par"
                    " les travailleurs sociaux, avec des bénévoles du quartier.",
                    "Épicerie sociale où les ménages aux revenus modestes font leurs courses pour 10 à 30 % du prix,"
                    " avec des ateliers cuisine et un accompagnement budgétaire.",
                    "Épicerie solidaire approvisionnée en fruits et légumes de producteurs voisins : un lieu de"
                    " courses et de rencontre tenu par des bénévoles, sur orientation des services sociaux.",
                ),
            ),
            (
                "Banque alimentaire {place}",
                (
                    "Banque alimentaire : collecte de denrées auprès des grandes surfaces et des producteurs, et"
                    " redistribution aux associations d'aide alimentaire et aux CCAS, grâce à ses bénévoles.",
                    "Ramasse quotidienne des invendus, stockage en chambre froide et distribution de colis"
                    " alimentaires aux épiceries sociales et aux associations partenaires.",
                    "Banque alimentaire : approvisionne en produits frais et secs les associations caritatives du"
                    " territoire et organise chaque année la collecte nationale en magasins.",
                ),
            ),
        ),
        ("solidarite_alimentaire", "alimentation_durable"),
        ("fourniture_biens", "benevolat"),
    ),
    Profile(
        "association",
        "Association loi 1901",
        (
            (
                "Centre social {quartier}",
                (
                    "Centre social agréé par la CAF : accueil de loisirs le mercredi et pendant les vacances, ateliers"
                    " parents-enfants et permanences d'accès aux droits.",
                    "Centre social : accompagnement à la scolarité, sorties familiales, cours de français et aide aux"
                    " démarches administratives, avec les associations du quartier.",
                    "Centre social géré par les habitants : animations pour les familles, soutien à la parentalité et"
                    " écrivain public pour les démarches du quotidien.",
                ),
            ),
            (
                "Maison de quartier {quartier}",
                (
                    "Maison de quartier : lieu d'accueil et d'animation pour tous les âges, aide aux devoirs, café des"
                    " parents et écrivain public.",
                    "Maison de quartier : accueil de loisirs pour les enfants, activités parents-enfants le mercredi,"
                    " point d'accès au droit et fêtes de quartier.",
                    "Espace de vie sociale et d'éducation populaire : activités pour les familles, sorties pendant les"
                    " vacances et accompagnement des habitants dans l'accès à leurs droits.",
                ),
            ),
        ),
        ("education_populaire", "enfance_parentalite", "acces_aux_droits"),
        ("prestation_service", "partenariat"),
    ),
    Profile(
        "association",
        "Association loi 1901",
        (
            (
                "Médiation numérique {place}",
                (
                    "Médiation numérique : des conseillers numériques accompagnent les habitants dans leurs démarches"
                    " en ligne (CAF, impôts, santé) et animent des ateliers pour prendre en main ordinateur et"
                    " smartphone.",
                    "Espace public numérique : ateliers d'initiation, aide aux démarches administratives et prêt"
                    " d'ordinateurs reconditionnés.",
                    "Lutte contre l'illectronisme : ateliers collectifs pour les seniors, accompagnement individuel"
                    " aux démarches et formation des aidants numériques des structures sociales.",
                ),
            ),
            (
                "Connexions solidaires {place}",
                (
                    "Inclusion numérique : permanences sans rendez-vous pour les démarches administratives en ligne et"
                    " parcours d'initiation à l'ordinateur pour les débutants.",
                    "Association de médiation numérique : ordinateurs reconditionnés à petit prix, ateliers pour"
                    " apprendre à s'en servir et accompagnement à l'accès aux droits.",
                    "Conseillers numériques itinérants : permanences dans les mairies et les centres sociaux pour les"
                    " démarches en ligne, ateliers de découverte d'internet.",
                ),
            ),
        ),
        ("mediation_numerique", "numerique", "acces_aux_droits"),
        ("formation", "conseil_accompagnement"),
    ),
    Profile(
        "association",
        "Association loi 1901",
        (
            (
                "Compagnie théâtrale {place}",
                (
                    "Compagnie de théâtre : créations jouées en salle et dans l'espace public, ateliers théâtre pour"
                    " les enfants et les adultes, spectacles pour les fêtes de quartier.",
                    "Théâtre d'intervention et ateliers d'écriture avec les habitants : la compagnie crée ses"
                    " spectacles à partir de la parole recueillie dans les quartiers.",
                    "Compagnie de théâtre de rue et de marionnettes : spectacles tout public, résidences dans les"
                    " écoles et ateliers de pratique pour les familles.",
                ),
            ),
            (
                "Collectif culturel {quartier}",
                (
                    "Collectif d'artistes : concerts, expositions et ateliers de pratique artistique au cœur du"
                    " quartier, et programmation d'un festival de rue chaque été.",
                    "Collectif culturel qui programme spectacles, concerts et projections en plein air, et accompagne"
                    " les habitants dans leurs projets artistiques.",
                    "Association d'éducation populaire par la culture : fresques participatives, ateliers de musique"
                    " et de danse, fête de quartier annuelle.",
                ),
            ),
        ),
        ("culture", "education_populaire"),
        ("prestation_service", "partenariat"),
    ),
    # The actors of a pattern take its descriptions in turn (`Descriptions`); where the order of a pattern's
    # descriptions is chosen, a comment says so: it gives a demo need (services/matching/demo.py) its answer.
    # In turn, Clermont-Ferrand's chantier grows vegetables (the Saint-Jacques gardens) and Biarritz's tends
    # riverbanks (the Adour).
    Profile(
        "siae",
        "Atelier et chantier d'insertion",
        (
            (
                "Chantier d'insertion {place}",
                (
                    "Chantier d'insertion en maraîchage biologique : les salariés en insertion cultivent un jardin"
                    " nourricier, préparent des paniers de légumes et accompagnent les jardins partagés du quartier.",
                    "Atelier et chantier d'insertion en espaces naturels : entretien de berges, de sentiers et de"
                    " parcs, débroussaillage ; les salariés en parcours d'insertion y préparent leur retour à"
                    " l'emploi.",
                    "Chantier d'insertion en écorénovation : isolation en matériaux biosourcés et petite rénovation de"
                    " logements pour les bailleurs sociaux ; chaque salarié est accompagné vers un emploi.",
                ),
            ),
            (
                "Tremplin {place}",
                (
                    "Chantier d'insertion en espaces verts et petit patrimoine : entretien de rivières, restauration de"
                    " murets, gestion de sites naturels pour les communes.",
                    "Atelier chantier d'insertion de tri et de valorisation des déchets verts et du bois ; un"
                    " accompagnement pas à pas vers l'emploi ou la formation qualifiante.",
                    "Chantier d'insertion en environnement : plantations de haies, lutte contre les plantes invasives"
                    " et entretien d'espaces naturels, encadrés par des techniciens.",
                ),
            ),
        ),
        ("iae", "environnement", "emploi_formation"),
        ("prestation_service", "mise_a_disposition_personnel"),
    ),
    Profile(
        "siae",
        "Entreprise d'insertion",
        (
            (
                "Traiteur solidaire {place}",
                (
                    "Traiteur en insertion : buffets et plateaux-repas cuisinés à partir de légumes de saison achetés"
                    " aux producteurs locaux, pour les entreprises et les collectivités.",
                    "Service traiteur d'une entreprise d'insertion : cocktails et repas d'événements faits maison,"
                    " en circuit court, par des cuisiniers en parcours d'insertion.",
                    "Traiteur et restaurant d'insertion : cuisine de saison avec les légumes des fermes voisines, et"
                    " formation aux métiers de la cuisine et du service en salle pour des personnes éloignées de"
                    " l'emploi.",
                ),
            ),
            (
                "Cuisine d'insertion {place}",
                (
                    "Cuisine d'insertion qui prépare des repas pour la restauration collective (cantines, crèches,"
                    " EHPAD) avec des produits locaux, en formant aux métiers de la cuisine des personnes éloignées"
                    " de l'emploi.",
                    "Légumerie et cuisine centrale en insertion : produits bruts des fermes voisines épluchés,"
                    " cuisinés et livrés aux cantines scolaires.",
                    "Entreprise d'insertion de restauration : repas du midi pour les salariés des zones d'activité et"
                    " plats cuisinés en circuit court.",
                ),
            ),
        ),
        ("iae", "alimentation_durable", "circuits_courts"),
        ("prestation_service", "fourniture_biens"),
    ),
    Profile(
        "siae",
        "Association intermédiaire",
        (
            (
                "Intermed {place}",
                (
                    "Association intermédiaire : met des personnes en recherche d'emploi à disposition des"
                    " particuliers, des associations et des collectivités pour du ménage, du jardinage ou de l'aide à"
                    " domicile, avec un suivi vers l'emploi durable.",
                    "Missions de travail pour des salariés en insertion : aide à domicile, entretien de bureaux,"
                    " manutention ; chaque salarié est suivi individuellement.",
                    "Association intermédiaire : petits travaux chez les particuliers, aide à domicile des personnes"
                    " âgées et renforts ponctuels pour les collectivités.",
                ),
            ),
            (
                "Services emploi {place}",
                (
                    "Mise à disposition de personnel en insertion : aides à domicile, agents d'entretien et"
                    " manutentionnaires pour des missions courtes, tremplin vers un emploi durable.",
                    "Association intermédiaire de services à la personne : ménage, repassage, courses et"
                    " accompagnement des personnes âgées, par des salariés en parcours d'insertion.",
                    "Structure d'insertion qui place des demandeurs d'emploi en missions d'aide à domicile et"
                    " d'entretien chez les particuliers et dans les entreprises, avec des formations aux gestes"
                    " professionnels.",
                ),
            ),
        ),
        ("iae", "emploi_formation", "aide_domicile"),
        ("mise_a_disposition_personnel",),
    ),
    Profile(
        "cooperative",
        "SCOP",
        (
            (
                "SCOP Bâtir ensemble {place}",
                (
                    "SCOP du bâtiment : rénovation de logements anciens, isolation en matériaux biosourcés et réemploi"
                    " des matériaux de chantier ; les salariés sont associés à la gouvernance.",
                    "Coopérative de second œuvre : travaux d'amélioration de l'habitat et de rénovation énergétique"
                    " avec des matériaux de réemploi, souvent en sous-traitance des bailleurs sociaux.",
                    "Coopérative de maçonnerie et d'écoconstruction : restauration du bâti ancien à la chaux et en"
                    " matériaux de récupération, chantiers participatifs avec les propriétaires.",
                ),
            ),
            (
                "Menuiserie coopérative {place}",
                (
                    "Menuiserie coopérative : cuisines, placards et mobilier sur mesure pour les logements, en bois"
                    " local et en bois de réemploi.",
                    "SCOP de menuiserie : fabrication et pose de menuiseries pour la rénovation de logements,"
                    " réparation de meubles anciens.",
                    "Atelier coopératif de menuiserie et d'ébénisterie : aménagements intérieurs et mobilier fabriqués"
                    " à partir de bois de récupération, en sous-traitance pour les agenceurs.",
                ),
            ),
        ),
        ("habitat", "economie_circulaire"),
        ("prestation_service", "sous_traitance"),
    ),
    Profile(
        "cooperative",
        "SCIC",
        (
            (
                "SCIC Énergies citoyennes {place}",
                (
                    "Coopérative d'énergie citoyenne : habitants et communes investissent ensemble dans des centrales"
                    " solaires sur les toits publics, et les bénéfices restent sur le territoire.",
                    "SCIC de production d'énergie renouvelable : installe et exploite des panneaux photovoltaïques sur"
                    " des bâtiments publics et agricoles, avec un capital ouvert aux habitants.",
                    "Coopérative d'énergie renouvelable citoyenne : projets solaires et éoliens portés avec les"
                    " collectivités, et animations sur les économies d'énergie.",
                ),
            ),
            (
                "Centrale villageoise {place}",
                (
                    "Centrale villageoise : des habitants, des entreprises locales et la commune financent et gèrent"
                    " ensemble des installations solaires sur les toits du village.",
                    "Société citoyenne de production d'électricité solaire : toitures louées aux communes et aux"
                    " agriculteurs, actionnaires habitants du territoire.",
                    "Centrale villageoise : panneaux solaires sur les bâtiments communaux et actions de sobriété"
                    " énergétique avec les écoles.",
                ),
            ),
        ),
        ("energie", "environnement"),
        ("prestation_service", "partenariat"),
    ),
    Profile(
        "cooperative",
        "SCIC",
        (
            (
                "Coopérative paysanne {place}",
                (
                    "Coopérative de producteurs : légumes, fromages et viandes de fermes voisines, vendus en magasin"
                    " de producteurs et livrés à la restauration collective.",
                    "Coopérative paysanne qui regroupe l'offre des fermes du territoire pour approvisionner cantines"
                    " et restaurants en légumes, viandes et laitages locaux et de saison.",
                    "Plateforme paysanne de vente directe : commandes en ligne, points de retrait chaque semaine et"
                    " prix justes pour les producteurs.",
                ),
            ),
            (
                "Le panier local {place}",
                (
                    "Paniers de légumes et de produits fermiers livrés chaque semaine dans des points relais, en lien"
                    " direct avec une vingtaine de producteurs des environs.",
                    "AMAP et épicerie de producteurs : les adhérents s'engagent pour une saison auprès des paysans et"
                    " retirent chaque semaine leur panier.",
                    "Magasin de producteurs en circuit court : fruits, légumes, pain et produits laitiers des fermes"
                    " voisines, et paniers à prix solidaire.",
                ),
            ),
        ),
        ("circuits_courts", "alimentation_durable"),
        ("fourniture_biens",),
    ),
    Profile(
        "cooperative",
        "CAE",
        (
            (
                "Coopérative d'activité {place}",
                (
                    "Coopérative d'activité et d'emploi : les porteurs de projet testent leur activité comme"
                    " entrepreneurs salariés, avec un accompagnement, une comptabilité et une assurance partagés.",
                    "CAE multi-activités : elle héberge une centaine d'entrepreneurs salariés (artisans, formateurs,"
                    " consultants) et les accompagne de la création à la pérennisation de leur activité.",
                    "Coopérative d'activité et d'emploi : accompagnement collectif des créateurs, formation à la"
                    " gestion et possibilité de devenir associé de la coopérative.",
                ),
            ),
        ),
        ("emploi_formation", "cooperation_territoriale"),
        ("conseil_accompagnement",),
    ),
    Profile(
        "adapted_company",
        "Entreprise adaptée",
        (
            (
                "Entreprise adaptée {place}",
                (
                    "Entreprise adaptée dont la plupart des salariés sont des travailleurs handicapés :"
                    " conditionnement, mise sous pli et numérisation de documents pour les entreprises et les"
                    " collectivités.",
                    "Entreprise adaptée de services : logistique, gestion du courrier et nettoyage, par des salariés en"
                    " situation de handicap accompagnés dans leur parcours professionnel.",
                    "Entreprise adaptée de blanchisserie et de sous-traitance industrielle, qui met aussi des salariés"
                    " handicapés à disposition d'entreprises partenaires.",
                ),
            ),
            (
                "ESAT {place}",
                (
                    "ESAT : des travailleurs en situation de handicap, encadrés par des moniteurs d'atelier, font de la"
                    " sous-traitance en conditionnement, mise sous pli et blanchisserie.",
                    "Établissement et service d'aide par le travail : ateliers de menuiserie et de routage de"
                    " courrier, et mises à disposition en entreprise.",
                    "ESAT aux activités variées : cuisine centrale, entretien de locaux et conditionnement à façon pour"
                    " les entreprises du territoire.",
                ),
            ),
        ),
        ("handicap", "emploi_formation"),
        ("prestation_service", "sous_traitance", "mise_a_disposition_personnel"),
    ),
    Profile(
        "tiers_lieu",
        "Association loi 1901",
        (
            (
                "Tiers-lieu La Fabrique {place}",
                (
                    "Tiers-lieu : espace de coworking, fablab et salles de réunion louées aux associations et aux"
                    " porteurs de projets, avec une programmation culturelle le week-end.",
                    "Friche devenue lieu partagé : bureaux partagés, atelier de fabrication numérique, café associatif"
                    " et concerts ouverts au quartier.",
                    "Tiers-lieu culturel et numérique : hébergement d'associations, résidences d'artistes et"
                    " permanences de médiation numérique.",
                ),
            ),
            (
                "La Coursive {place}",
                (
                    "Tiers-lieu associatif : coworking, salle d'activité prêtée aux associations, concerts et ateliers"
                    " de découverte du numérique.",
                    "Lieu hybride qui accueille des associations et des entrepreneurs : bureaux partagés, fablab,"
                    " expositions et rencontres entre acteurs du territoire.",
                    "Tiers-lieu culturel : salle de spectacle, atelier partagé et espace de coworking pour les"
                    " porteurs de projets de l'ESS.",
                ),
            ),
        ),
        ("cooperation_territoriale", "numerique", "culture"),
        ("mise_a_disposition_locaux", "partenariat"),
    ),
    # In turn, Mulhouse's mutual runs a home-care service (the Haut-Rhin's home care for the elderly).
    Profile(
        "mutual",
        "Mutuelle",
        (
            (
                "Mutuelle solidaire {place}",
                (
                    "Mutuelle santé à but non lucratif : complémentaire santé accessible, actions de prévention et"
                    " accompagnement des adhérents âgés pour bien vieillir chez eux.",
                    "Mutuelle qui gère un service d'aide à domicile et des centres de santé ; programmes de prévention"
                    " des chutes pour les seniors.",
                    "Mutuelle de proximité : ateliers de prévention (nutrition, mémoire, équilibre), aide au choix"
                    " d'une complémentaire santé et soutien aux aidants.",
                ),
            ),
        ),
        ("sante", "vieillissement"),
        ("conseil_accompagnement",),
    ),
    Profile(
        "foundation",
        "Fondation",
        (
            (
                "Fondation pour l'habitat {place}",
                (
                    "Fondation d'aide au logement : elle aide les ménages modestes à accéder à un logement digne,"
                    " finance la rénovation de logements insalubres et accompagne les locataires dans leurs droits.",
                    "Fondation de lutte contre le mal-logement : permanences d'accès aux droits, médiation avec les"
                    " bailleurs et aide aux travaux des propriétaires modestes.",
                    "Fondation dédiée à l'habitat inclusif et à la lutte contre la précarité énergétique, partenaire"
                    " des collectivités pour accompagner les ménages dans leurs droits.",
                ),
            ),
        ),
        ("habitat", "acces_aux_droits"),
        ("partenariat",),
    ),
    Profile(
        "esus_company",
        "SAS agréée ESUS",
        (
            (
                "Mobilités partagées {place}",
                (
                    "Autopartage et covoiturage solidaire : prêt de véhicules aux personnes en insertion pour rejoindre"
                    " un emploi ou une formation, et navettes d'été vers les sites touristiques.",
                    "Plateforme de mobilité solidaire : location de voitures et de scooters à petit prix, conseil en"
                    " mobilité et transport de groupes vers les sites touristiques.",
                    "Transport solidaire : minibus à la demande pour les habitants des villages sans voiture, et"
                    " excursions accessibles aux personnes à mobilité réduite.",
                ),
            ),
            (
                "Tourisme solidaire {place}",
                (
                    "Agence de tourisme solidaire : séjours de vacances pour les familles modestes et les personnes en"
                    " situation de handicap, transport adapté compris.",
                    "Départs en vacances pour les familles qui ne partent jamais, organisés avec les centres sociaux ;"
                    " navettes et transport de groupes.",
                    "Voyages solidaires : séjours à la ferme, randonnées accessibles et location de minibus aux"
                    " associations.",
                ),
            ),
        ),
        ("mobilite", "tourisme_solidaire"),
        ("prestation_service",),
    ),
    Profile(
        "support_network",
        "Association loi 1901",
        (
            (
                "Fabrique à initiatives {place}",
                (
                    "Fabrique à initiatives : repère les besoins sociaux non couverts du territoire et accompagne la"
                    " création d'entreprises sociales pour y répondre, jusqu'à leurs premiers financements solidaires.",
                    "Fabrique à initiatives : réunit collectivités et acteurs locaux pour faire émerger des projets"
                    " d'utilité sociale, puis accompagne la création de l'entreprise et son financement solidaire.",
                    "Fabrique à initiatives qui transforme les besoins repérés avec les élus en entreprises de l'ESS :"
                    " étude d'opportunité, recherche de porteurs, création et premiers financements solidaires.",
                ),
            ),
            (
                "Incubateur ESS {place}",
                (
                    "Incubateur d'entreprises sociales : dix-huit mois d'accompagnement à la création pour les porteurs"
                    " de projets, formations et mise en relation avec les financeurs solidaires.",
                    "Incubateur de l'ESS : accompagne la création de coopératives, d'associations employeuses et"
                    " d'entreprises sociales, et aide à obtenir prêts d'honneur et garanties.",
                    "Incubateur ESS : ateliers collectifs sur la création d'entreprise, mentorat par des dirigeants de"
                    " l'ESS et accès à un fonds d'amorçage solidaire.",
                ),
            ),
        ),
        ("cooperation_territoriale", "finance_solidaire"),
        ("conseil_accompagnement", "formation"),
    ),
]

# What a demo local authority says of itself: how it works with the ESS (it answers no need, it publishes them).
AUTHORITY_DESCRIPTIONS = (
    "La commune soutient l'économie sociale et solidaire par ses achats responsables, un appel à projets annuel et un"
    " élu délégué à l'ESS.",
    "Collectivité membre du RTES : clauses sociales dans ses marchés publics, subventions aux associations et soutien"
    " aux tiers-lieux du territoire.",
    "La ville accompagne les projets d'utilité sociale de son territoire et réunit chaque année les acteurs de l'ESS"
    " lors d'un forum.",
)

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


class Descriptions:
    """Hands out each name pattern's descriptions in turn, from a seeded starting point, so that the actors of one
    pattern share them out evenly; it draws from its own generator, so that the other columns stay what they were."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.given: dict[str, int] = {}

    def next(self, pattern: str, descriptions: tuple[str, ...]) -> str:
        start = random.Random(f"{self.seed}:{pattern}").randrange(len(descriptions))
        turn = self.given.get(pattern, 0)
        self.given[pattern] = turn + 1
        return descriptions[(start + turn) % len(descriptions)]


def generate(per_place: int = 14, seed: int = 2026) -> list[dict[str, str]]:
    rng = random.Random(seed)
    described = Descriptions(seed)
    rows: list[dict[str, str]] = []
    for places in TERRITORIES.values():
        for place in places:
            for index in range(per_place):
                profile = PROFILES[(index + len(rows)) % len(PROFILES)]
                themes, services = profile.themes, profile.service_types
                in_qpv = bool(place.qpv) and rng.random() < 0.35
                quartier = rng.choice(place.qpv_names) if place.qpv_names else place.name
                pattern, descriptions = rng.choice(profile.patterns)
                name = pattern.format(place=place.name, quartier=quartier)
                source_id = f"demo-{place.commune}-{index:02d}"
                area = rng.choice(
                    ["radius:15", "radius:30", f"COM-{place.commune}", "national"]
                    if rng.random() < 0.1
                    else ["radius:15", "radius:30", f"COM-{place.commune}"]
                )
                activities = ";".join(f"{theme}/{services[0]}/{area}" for theme in themes[:2])
                rows.append(
                    {
                        "source_id": source_id,
                        "name": name if index < len(PROFILES) else f"{name} ({index})",
                        "kind": profile.kind,
                        "legal_form": profile.legal_form,
                        "commune_code": place.commune,
                        "lat": f"{place.lat + rng.uniform(-0.025, 0.025):.5f}",
                        "lon": f"{place.lon + rng.uniform(-0.035, 0.035):.5f}",
                        "qpv_code": rng.choice(place.qpv) if in_qpv else "",
                        "description": described.next(pattern, descriptions),
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
                        "description": described.next("authority", AUTHORITY_DESCRIPTIONS),
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
