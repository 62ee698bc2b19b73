"""CloudEvents binary mode: what goes into Kafka headers and what a consumer accepts back."""

from __future__ import annotations

import json

import pytest

from services.common.envelope import CloudEvent, MalformedMessage, from_kafka


def _event() -> CloudEvent:
    return CloudEvent(
        type="org.maillage.matching.need.published",
        source="/maillage/matching",
        data={"need_id": "n1", "title": "Ressourcerie à Planoise"},
        subject="n1",
        extensions={"correlationid": "abc"},
    )


class TestRoundTrip:
    def test_headers_carry_the_required_attributes(self) -> None:
        headers = dict(_event().kafka_headers())
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_type"] == b"org.maillage.matching.need.published"
        assert headers["ce_source"] == b"/maillage/matching"
        assert headers["content-type"] == b"application/json"
        assert headers["ce_correlationid"] == b"abc"

    def test_a_record_parses_back_to_the_same_event(self) -> None:
        event = _event()
        parsed = from_kafka(event.kafka_headers(), event.kafka_value())
        assert parsed == event
        assert parsed.correlation_id == "abc"

    def test_data_is_compact_utf8_json(self) -> None:
        value = _event().kafka_value()
        assert json.loads(value)["title"] == "Ressourcerie à Planoise"
        assert b" " not in value.replace(b"Ressourcerie \xc3\xa0 Planoise", b"")


class TestMalformed:
    @pytest.mark.parametrize("missing", ["ce_id", "ce_source", "ce_type", "ce_specversion"])
    def test_a_missing_required_header_is_named(self, missing: str) -> None:
        headers = [h for h in _event().kafka_headers() if h[0] != missing]
        with pytest.raises(MalformedMessage, match=missing):
            from_kafka(headers, _event().kafka_value())

    @pytest.mark.parametrize(
        ("value", "rule"),
        [(b"{oops", "not JSON"), (b"[1, 2]", "JSON object"), (None, "empty value"), (b"\xff\xfe", "not JSON")],
    )
    def test_bad_data_is_refused_with_the_rule(self, value: bytes | None, rule: str) -> None:
        with pytest.raises(MalformedMessage, match=rule):
            from_kafka(_event().kafka_headers(), value)

    def test_another_specversion_is_refused(self) -> None:
        headers = [(k, b"0.3" if k == "ce_specversion" else v) for k, v in _event().kafka_headers()]
        with pytest.raises(MalformedMessage, match="specversion"):
            from_kafka(headers, b"{}")

    def test_a_bad_time_is_refused(self) -> None:
        headers = [(k, b"yesterday" if k == "ce_time" else v) for k, v in _event().kafka_headers()]
        with pytest.raises(MalformedMessage, match="ce_time"):
            from_kafka(headers, b"{}")

    def test_another_content_type_is_refused(self) -> None:
        headers = [(k, b"application/avro" if k == "content-type" else v) for k, v in _event().kafka_headers()]
        with pytest.raises(MalformedMessage, match="content-type"):
            from_kafka(headers, b"{}")
