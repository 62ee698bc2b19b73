"""The one place that lists the services and what each plugs into a process: its router, consumers and loops.

Each entry imports its service only when asked, so that a process serving one service loads no other; the
imports are still plain import statements, which the import-linter contract of pyproject.toml checks.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from services.common.app import Role, ServiceParts, create_service_app
from services.common.settings import Settings


def directory() -> ServiceParts:
    from services.directory import api, consumers

    return ServiceParts(router=api.router, build_consumers=consumers.build_consumers)


def events() -> ServiceParts:
    from services.events import api, consumers

    return ServiceParts(
        router=api.router,
        build_consumers=consumers.build_consumers,
        build_loops=consumers.build_tasks,
        apply_actor=consumers.apply_actor,
    )


def matching() -> ServiceParts:
    from services.matching import api, consumers, service

    return ServiceParts(
        router=api.router,
        build_consumers=consumers.build_consumers,
        build_loops=consumers.build_tasks,
        apply_actor=service.apply_actor,
        # Its candidate probes take a few ms each; with parallel workers a door's probe at 1,000,000 actors took
        # 4.3 ms at p50 instead of 2.0 (bench/matching.py).
        parallel_query=False,
    )


SERVICE_PARTS: dict[str, Callable[[], ServiceParts]] = {
    "directory": directory,
    "events": events,
    "matching": matching,
}


def parts_of(service: str) -> ServiceParts:
    """The parts of one registered service; an unknown name is a programming error (the CLI offers only these)."""
    try:
        entry = SERVICE_PARTS[service]
    except KeyError:
        raise ValueError(f"no service {service!r}: registered are {', '.join(SERVICE_PARTS)}") from None
    return entry()


def service_app(service: str, role: Role, settings: Settings) -> FastAPI:
    """The FastAPI app of one registered service in one role."""
    return create_service_app(service, role, settings, parts_of(service))
