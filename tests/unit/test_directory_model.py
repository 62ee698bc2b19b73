"""The actor model's pure rules: contract payloads built two ways agree, personal data stays out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.directory import store
from services.directory.imports import row_to_actor
from services.directory.model import to_contract


def test_the_bulk_contract_equals_the_validated_one() -> None:
    actor = row_to_actor(
        {
            "name": "Atelier vélo du Neuhof",
            "kind": "association",
            "commune_code": "67482",
            "lat": "48.55",
            "lon": "7.77",
            "themes": "mobilite;reparation",
            "service_types": "formation",
            "qpv_code": "QN06701M",
            "activities": "mobilite/formation/radius:20;reparation/prestation_service/DEP-67 COM-68224",
            "contact_email": "velo@example.org",
            "website": "https://example.org",
            "networks": "CRESS;Heureux Cyclage",
        }
    )
    actor_id, now = uuid.uuid4(), datetime.now(UTC)
    values = store.row_values(actor)
    bulk = store.contract_data(actor_id, 1, values, now)
    validated = to_contract(store.read_from_values(actor_id, 1, values, now, now)).model_dump(mode="json")
    assert bulk == validated
    assert "contact" not in bulk and "velo@example.org" not in str(bulk)
    assert bulk["territories"][0] == "COM-67482" and bulk["departement"] == "67"
