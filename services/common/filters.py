"""Query parameters shared by the search endpoints: vocabulary codes, INSEE territory codes, a circle around a point."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from pydantic import BaseModel, Field

from services.common.errors import ValidationFailed
from services.contracts import territories


def check_vocabulary(name: str, values: list[str], vocabulary: Mapping[str, object]) -> None:
    unknown = [v for v in values if v not in vocabulary]
    if unknown:
        raise ValidationFailed(f"unknown {name} code(s): {', '.join(unknown)}", field=name, rule="vocabulary")


def territory_codes(values: list[str]) -> list[str]:
    """Normalised codes (COM-25056, EPCI-…, DEP-25, REG-27); 422 naming `territory` for an unknown one."""
    codes = []
    for code in values:
        try:
            codes.append(territories.normalize_territory(code))
        except territories.TerritoryError as exc:
            raise ValidationFailed(str(exc), field="territory", rule=exc.rule) from exc
    return codes


def near(lat: float | None, lon: float | None, radius_km: float | None) -> tuple[float, float, float] | None:
    """The circle of a search, or None; the three parameters come together or not at all."""
    if lat is None and lon is None and radius_km is None:
        return None
    if lat is None or lon is None or radius_km is None:
        raise ValidationFailed(
            "near needs lat, lon and radius_km together", field="radius_km", rule="required_together"
        )
    return (lat, lon, radius_km)


class BatchRequest(BaseModel):
    """Ids to read at once (the gateway's loaders); answers keep their order, null where nothing is found."""

    ids: list[str] = Field(max_length=500)

    def uuids(self) -> list[uuid.UUID | None]:
        """Each id as a UUID, None for one that is not (it names nothing)."""
        wanted: list[uuid.UUID | None] = []
        for value in self.ids:
            try:
                wanted.append(uuid.UUID(value))
            except ValueError:
                wanted.append(None)
        return wanted
