"""Settings, the topic plan and the CLI's argument parsing: pure rules, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.common.settings import Settings
from services.contracts.topics import TOPICS, topic_plan
from services.launch.cli import parse_duration, parse_since
from services.launch.devstack import DevStack
from services.launch.runtime import ConfigurationError, check_secrets


class TestSettings:
    def test_each_service_gets_its_own_database_on_the_server(self, unit_settings: Settings) -> None:
        s = unit_settings.model_copy(update={"database_url": "postgresql://u:p@db:5432/postgres?sslmode=require"})
        assert s.database_url_for("directory") == "postgresql://u:p@db:5432/maillage_directory?sslmode=require"
        assert s.database_url_for("matching").endswith("/maillage_matching?sslmode=require")

    def test_the_dev_stack_passes_the_callers_settings_to_every_process(
        self, unit_settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MAILLAGE_MATCH_K", "7")
        monkeypatch.setenv("MAILLAGE_HOME", "/somewhere/else")
        monkeypatch.setenv("MAILLAGE_GATEWAY_PORT", "1")
        stack = DevStack(unit_settings.model_copy(update={"home": "/srv/maillage-home", "gateway_port": 8400}))
        env = stack.child_env()
        assert env["MAILLAGE_MATCH_K"] == "7"
        assert env["MAILLAGE_HOME"] == "/srv/maillage-home" and env["MAILLAGE_GATEWAY_PORT"] == "8400"
        assert env["MAILLAGE_WEBHOOK_ALLOW_PRIVATE"] == "true" and env["MAILLAGE_EMAIL_ENABLED"] == "false"

    def test_an_explicit_service_database_wins(self, unit_settings: Settings) -> None:
        s = unit_settings.model_copy(update={"events_database_url": "postgresql://managed/events"})
        assert s.database_url_for("events") == "postgresql://managed/events"

    def test_environment_variables_configure_everything(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MAILLAGE_KAFKA_BOOTSTRAP", "kafka:9092")
        monkeypatch.setenv("MAILLAGE_DIRECTORY_PORT", "9001")
        s = Settings(_env_file=None)
        assert s.kafka_bootstrap == "kafka:9092"
        assert s.port_for("directory") == 9001

    def test_session_timeout_below_the_kafka_floor_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="6000"):
            Settings(_env_file=None, consumer_session_timeout_ms=3000)

    def test_missing_signing_keys_stop_startup_with_the_variable_named(self, unit_settings: Settings) -> None:
        with pytest.raises(ConfigurationError, match="MAILLAGE_JWT_KEYS"):
            check_secrets(unit_settings.model_copy(update={"jwt_keys": ""}))
        with pytest.raises(ConfigurationError, match="MAILLAGE_INTERNAL_KEY"):
            check_secrets(unit_settings.model_copy(update={"internal_key": ""}))
        with pytest.raises(ConfigurationError, match="MAILLAGE_JWT_ACTIVE_KID"):
            check_secrets(unit_settings.model_copy(update={"jwt_active_kid": "nope"}))
        with pytest.raises(ConfigurationError, match="JSON object"):
            check_secrets(unit_settings.model_copy(update={"jwt_keys": '["a"]'}))
        check_secrets(unit_settings)


class TestTopicPlan:
    def test_the_design_topics_are_all_planned_with_their_dead_letter_topics(self) -> None:
        names = {name for name, _ in topic_plan()}
        for topic in (
            "maillage.directory.actor.v1",
            "maillage.events.event.v1",
            "maillage.events.registration.v1",
            "maillage.matching.need.v1",
            "maillage.matching.match.v1",
        ):
            assert topic in names
            assert topic + ".dlq" in names

    def test_every_topic_says_which_key_keeps_its_order(self) -> None:
        assert all(spec.key and spec.partitions >= 1 for spec in TOPICS)


class TestCliParsing:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("30s", timedelta(seconds=30)),
            ("15m", timedelta(minutes=15)),
            ("12h", timedelta(hours=12)),
            ("90d", timedelta(days=90)),
        ],
    )
    def test_durations(self, text: str, expected: timedelta) -> None:
        assert parse_duration(text) == expected

    @pytest.mark.parametrize("text", ["", "h", "12", "1.5h", "-3d", "12w"])
    def test_bad_durations_say_the_rule(self, text: str) -> None:
        with pytest.raises(ValueError, match="s, m, h or d"):
            parse_duration(text)

    def test_since_accepts_a_duration_ago_or_an_iso_time(self) -> None:
        ago = parse_since("2h")
        assert timedelta(hours=2) - timedelta(seconds=5) < datetime.now(UTC) - ago < timedelta(hours=2, seconds=5)
        assert parse_since("2026-11-20T08:00") == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
        with pytest.raises(ValueError, match="ISO time"):
            parse_since("last tuesday")


class TestKafkaConnection:
    def test_plaintext_by_default(self, unit_settings: Settings) -> None:
        from services.common.kafka import connection_options

        options = connection_options(unit_settings)
        assert options == {"bootstrap_servers": unit_settings.kafka_bootstrap, "security_protocol": "PLAINTEXT"}

    async def test_managed_kafka_over_sasl_ssl(self, unit_settings: Settings) -> None:
        import ssl

        from services.common.kafka import connection_options, new_consumer, new_producer

        managed = unit_settings.model_copy(
            update={
                "kafka_bootstrap": "b-1.kafka.example.org:9096",
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_username": "maillage",
                "kafka_sasl_password": "s3cret",
            }
        )
        options = connection_options(managed)
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("maillage", "s3cret")
        assert isinstance(options["ssl_context"], ssl.SSLContext)
        assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
        # aiokafka accepts them (clients are only built here, never started).
        producer = new_producer(managed)
        consumer = new_consumer(managed, "t", group_id="g")
        assert producer.client._security_protocol == "SASL_SSL"
        assert consumer._client._sasl_mechanism == "SCRAM-SHA-512"

    def test_an_unknown_protocol_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="kafka_security_protocol"):
            Settings(_env_file=None, kafka_security_protocol="TLS")
