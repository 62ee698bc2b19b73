"""The launcher's registry: every service listed once with its own parts, and a process loads only its service."""

from __future__ import annotations

import json
import subprocess
import sys
from types import ModuleType

import pytest

from services.common.app import no_loops
from services.common.settings import SERVICES
from services.directory import api as directory_api
from services.directory import consumers as directory_consumers
from services.events import api as events_api
from services.events import consumers as events_consumers
from services.launch.registry import SERVICE_PARTS, parts_of
from services.matching import api as matching_api
from services.matching import consumers as matching_consumers
from services.matching import service as matching_service


def test_the_registry_lists_every_service_in_order() -> None:
    assert tuple(SERVICE_PARTS) == SERVICES


@pytest.mark.parametrize(
    ("service", "api", "consumers"),
    [
        ("directory", directory_api, directory_consumers),
        ("events", events_api, events_consumers),
        ("matching", matching_api, matching_consumers),
    ],
)
def test_each_entry_holds_that_services_own_parts(service: str, api: ModuleType, consumers: ModuleType) -> None:
    parts = parts_of(service)
    assert parts.router is api.router
    assert parts.build_consumers is consumers.build_consumers
    if service == "directory":  # no replica, no other loops
        assert parts.apply_actor is None
        assert parts.build_loops is no_loops
        return
    if service == "events":
        assert parts.apply_actor is consumers.apply_actor
    else:  # matching's replica is applied by its use cases (an actor changed may enter a need's top K)
        assert parts.apply_actor is matching_service.apply_actor
    assert parts.build_loops is consumers.build_tasks


def test_an_unknown_service_is_refused_with_the_registered_names() -> None:
    with pytest.raises(ValueError, match="no service 'gateway': registered are directory, events, matching"):
        parts_of("gateway")


def test_a_service_process_imports_no_other_service() -> None:
    script = (
        "import json, sys\n"
        "from services.common.settings import Settings\n"
        "from services.launch.registry import service_app\n"
        "service_app('directory', 'all', Settings(_env_file=None))\n"
        "others = sorted(m for m in sys.modules if m.startswith(('services.events', 'services.matching', 'gateway')))\n"
        "print(json.dumps({'own': 'services.directory.api' in sys.modules, 'others': others}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == {"own": True, "others": []}
