"""Links people receive are built on one public address, the gateway's, and never on a service's own port."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.envelope import CloudEvent
from services.common.settings import Settings
from services.contracts.events import MatchV1
from services.events import emails as event_emails
from services.events.api import event_url
from services.launch.devstack import DevStack
from services.matching import emails as matching_emails

PUBLIC = "https://maillage.example.org"
URL = re.compile(r"https?://\S+")


class TestTheSetting:
    def test_the_public_url_is_also_read_from_its_former_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("MAILLAGE_PUBLIC_URL", raising=False)
        monkeypatch.setenv("MAILLAGE_PUBLIC_APP_URL", "https://ancien.example.org")
        assert Settings(_env_file=None).public_url == "https://ancien.example.org"
        monkeypatch.setenv("MAILLAGE_PUBLIC_URL", PUBLIC)
        assert Settings(_env_file=None).public_url == PUBLIC, "the new name wins"

    def test_an_upgraded_env_file_keeps_its_address_and_the_events_one_is_no_longer_read(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("MAILLAGE_PUBLIC_URL", "MAILLAGE_PUBLIC_APP_URL", "MAILLAGE_PUBLIC_EVENTS_URL"):
            monkeypatch.delenv(name, raising=False)
        env = tmp_path / ".env"
        env.write_text("MAILLAGE_PUBLIC_APP_URL=https://ancien.example.org\n")
        assert Settings(_env_file=env).public_url == "https://ancien.example.org"
        env.write_text("MAILLAGE_PUBLIC_EVENTS_URL=https://evenements.example.org\n")
        assert Settings(_env_file=env).public_url == Settings.model_fields["public_url"].default
        assert not hasattr(Settings(_env_file=env), "public_events_url")

    def test_the_dev_stack_links_to_its_own_gateway_unless_told_otherwise(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("MAILLAGE_PUBLIC_URL", "MAILLAGE_PUBLIC_APP_URL"):
            monkeypatch.delenv(name, raising=False)
        env = DevStack(Settings(_env_file=None, host="127.0.0.1", gateway_port=8400)).child_env()
        assert env["MAILLAGE_PUBLIC_URL"] == "http://127.0.0.1:8400"
        monkeypatch.setenv("MAILLAGE_PUBLIC_APP_URL", PUBLIC)
        told = DevStack(Settings(_env_file=None, gateway_port=8400)).child_env()
        assert "MAILLAGE_PUBLIC_URL" not in told and told["MAILLAGE_PUBLIC_APP_URL"] == PUBLIC, (
            "theirs reaches the processes"
        )


def service_addresses(settings: Settings) -> list[str]:
    return [settings.url_for(s) for s in ("directory", "events", "matching")] + [
        f":{settings.port_for(s)}/" for s in ("directory", "events", "matching")
    ]


class TestLinks:
    settings = Settings(_env_file=None, internal_key="k", public_url=PUBLIC + "/")

    def test_every_registration_email_links_to_the_gateway_only(self) -> None:
        event = {
            "title": "Forum ESS",
            "timezone": "Europe/Paris",
            "starts_at": datetime(2031, 1, 15, 17, 0, tzinfo=UTC),
            "address": "Kursaal",
            "online_url": None,
        }
        rid = uuid.uuid4()
        linked = 0
        for what in event_emails.MESSAGES:
            _, body = event_emails.compose(what, event, rid, self.settings, position=1)
            links = URL.findall(body)
            linked += len(links)
            assert all(link.startswith(PUBLIC + "/v1/") for link in links), (what, links)
            assert not any(address in body for address in service_addresses(self.settings)), what
        assert linked == len(event_emails.LIVE), "one cancel link in each e-mail about a live registration"
        token = event_emails.cancel_token(self.settings, rid)
        assert event_emails.cancel_link(self.settings, rid) == f"{PUBLIC}/v1/registrations/{rid}/cancel?token={token}"

    def test_every_match_email_links_to_the_gateway_only(self) -> None:
        match = MatchV1(
            id=str(uuid.uuid4()),
            need_id=str(uuid.uuid4()),
            actor_id=str(uuid.uuid4()),
            owner_id=str(uuid.uuid4()),
            need_title="Une ressourcerie",
            score=0.8,
            status="interested",
            updated_at=datetime.now(UTC).isoformat(),
        )
        bodies = [
            body
            for kind in ("found", "responded")
            for *_, body in matching_emails.compose(
                CloudEvent(f"org.maillage.matching.match.{kind}", "test", {}), match, self.settings
            )
        ]
        assert len(bodies) == 3
        for body in bodies:
            (link,) = URL.findall(body)
            assert link.startswith(PUBLIC + "/"), link

    def test_event_pages_of_json_ld_and_calendars_are_on_the_gateway(self) -> None:
        event_id = str(uuid.uuid4())
        assert event_url(self.settings, event_id) == f"{PUBLIC}/v1/events/{event_id}"
