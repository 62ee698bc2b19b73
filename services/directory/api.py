"""The directory service's REST API (filled by its own issue; the identity endpoint comes from the app factory)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["directory"])
