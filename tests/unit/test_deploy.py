"""The deployment files, checked statically: compose, the image, Kubernetes manifests, AsyncAPI, settings."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml
from typer.testing import CliRunner

from gateway.subscriptions import FOUND, UPDATED
from services.common.db import EXTENSIONS
from services.common.settings import DATABASES, DEFAULT_PORTS, NOT_DEPLOYED, SERVICES, Settings
from services.contracts.events import REGISTRY
from services.contracts.topics import TOPICS, min_insync_replicas, topic_config
from services.launch.asyncapi import consumer_groups, render
from services.launch.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
IMAGE = "ghcr.io/maillage/maillage"


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DEPLOY / "schemas" / name).read_text())
    return schema


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return doc


def _maillage_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compose services that run the Maillage image."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def _compose_env() -> dict[str, str]:
    """The settings every Maillage process of compose gets (the `x-maillage-env` anchor)."""
    env: dict[str, str] = _compose()["x-maillage-env"]
    return env


def _manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in _manifests():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _configmap() -> dict[str, str]:
    (doc,) = (doc for _, doc in _manifests() if doc["kind"] == "ConfigMap")
    data: dict[str, str] = doc["data"]
    return data


def _deployed_settings() -> set[str]:
    return {f"MAILLAGE_{name.upper()}" for name in Settings.model_fields if name not in NOT_DEPLOYED}


# --- docker-compose ------------------------------------------------------------------------------------


class TestCompose:
    def test_it_validates_against_the_compose_specification(self) -> None:
        validator = jsonschema.Draft201909Validator(_schema("compose-spec.json"))
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(_compose())]
        assert errors == []

    def test_the_schema_catches_a_broken_file(self) -> None:
        validator = jsonschema.Draft201909Validator(_schema("compose-spec.json"))
        broken = copy.deepcopy(_compose())
        broken["services"]["gateway"]["healthcheck"]["retry"] = 3  # not `retries`
        broken["services"]["init"]["depends_on"]["postgres"]["condition"] = "service_ready"
        messages = [e.message for e in validator.iter_errors(broken)]
        assert len(messages) == 2, messages

    def test_infrastructure_images_are_pinned_and_kafka_runs_in_kraft_mode(self) -> None:
        services = _compose()["services"]
        for name in ("postgres", "kafka"):
            image = services[name]["image"]
            assert re.fullmatch(r"[a-z/]+:\d+\.\d+(\.\d+)?(-[a-z]+)?", image), f"{name} image not pinned: {image}"
        kafka = services["kafka"]["environment"]
        assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert "zookeeper" not in json.dumps(services).lower()
        assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics come from the plan

    def test_the_broker_defaults_are_the_topic_plan_durability(self) -> None:
        """A topic created by anything but the plan (an operator's tool) gets the plan's replicas and min ISR."""
        kafka = _compose()["services"]["kafka"]["environment"]
        # The replication the init job creates topics with: MAILLAGE_TOPIC_REPLICATION, as compose passes it.
        passed = re.fullmatch(r"\$\{MAILLAGE_TOPIC_REPLICATION:-(\d*)\}", _compose_env()["MAILLAGE_TOPIC_REPLICATION"])
        assert passed is not None
        replication = int(passed.group(1) or Settings.model_fields["topic_replication"].default)
        assert int(kafka["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == replication
        assert int(kafka["KAFKA_MIN_INSYNC_REPLICAS"]) == min_insync_replicas(replication)
        assert topic_config(replication) == {"min.insync.replicas": str(kafka["KAFKA_MIN_INSYNC_REPLICAS"])}
        assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"

    def test_every_process_has_its_service_and_role(self) -> None:
        services = _maillage_services(_compose())
        commands = {tuple(service["command"]) for service in services.values()}
        expected = {("serve", s, "--role", role) for s in SERVICES for role in ("api", "worker")}
        assert expected | {("serve", "gateway"), ("init",)} == commands

    def test_healthchecks_gate_startup_and_restarts_are_automatic(self) -> None:
        services = _compose()["services"]
        for name, service in services.items():
            for dependency, condition in service.get("depends_on", {}).items():
                if condition["condition"] == "service_healthy":
                    assert "healthcheck" in services[dependency], f"{name} waits on {dependency}, which has none"
                else:
                    assert condition["condition"] == "service_completed_successfully"
                    assert services[dependency]["restart"] == "no"
            if name != "init":
                assert service["restart"] == "unless-stopped", name
                assert "healthcheck" in service, name
        for name in _maillage_services(_compose()):
            if name != "init":
                assert services[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}
        assert services["init"]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "kafka": {"condition": "service_healthy"},
        }

    def test_consumers_get_time_to_commit_and_data_lives_in_named_volumes(self) -> None:
        compose = _compose()
        for name, service in compose["services"].items():
            grace = service.get("stop_grace_period", "10s")
            assert int(grace.rstrip("s")) >= 30, f"{name}: {grace}"
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                assert source.startswith("./") or source in compose["volumes"], f"{name}: {volume}"
        assert set(compose["volumes"]) == {"postgres-data", "kafka-data"}
        assert "postgres-data:/var/lib/postgresql" in compose["services"]["postgres"]["volumes"]

    def test_secrets_are_required_from_the_environment_never_written(self) -> None:
        text = COMPOSE_FILE.read_text()
        for variable in ("MAILLAGE_JWT_KEYS", "MAILLAGE_INTERNAL_KEY", "POSTGRES_PASSWORD", "GATEWAY_DB_PASSWORD"):
            assert re.search(r"\$\{" + variable + r":\?[^}]+\}", text), f"{variable} is not required"
        for service in _compose()["services"].values():
            for key, value in (service.get("environment") or {}).items():
                if "KEY" in key or "PASSWORD" in key:
                    assert str(value).startswith("${"), f"{key} has a literal value"

    def test_env_example_documents_every_variable_compose_reads(self) -> None:
        read = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
        documented = set(re.findall(r"^#? ?([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
        assert read == documented

    def test_only_the_gateway_publishes_a_port_and_not_its_metrics(self) -> None:
        services = _compose()["services"]
        published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
        gateway, metrics = DEFAULT_PORTS["gateway"], Settings.model_fields["gateway_metrics_port"].default
        assert published == {"gateway": [f"{gateway}:{gateway}"]}, "the services are reached inside the network only"
        assert services["gateway"]["expose"] == [f"${{MAILLAGE_GATEWAY_METRICS_PORT:-{metrics}}}"]

    def test_links_people_receive_lead_to_the_published_gateway(self) -> None:
        environment = _compose()["x-maillage-env"]
        assert not {"MAILLAGE_PUBLIC_APP_URL", "MAILLAGE_PUBLIC_EVENTS_URL"} & set(environment)
        # An .env written before still naming MAILLAGE_PUBLIC_APP_URL is passed on under the new name.
        found = re.fullmatch(
            r"\$\{MAILLAGE_PUBLIC_URL:-\$\{MAILLAGE_PUBLIC_APP_URL:-(\S+)\}\}", environment["MAILLAGE_PUBLIC_URL"]
        )
        assert found, environment["MAILLAGE_PUBLIC_URL"]
        assert urlsplit(found.group(1)).port == DEFAULT_PORTS["gateway"]

    def test_each_process_holds_only_its_own_database_credentials(self) -> None:
        for name, service in _maillage_services(_compose()).items():
            urls = {key for key in service["environment"] if key.endswith("_DATABASE_URL")}
            if name == "init":
                assert urls == {f"MAILLAGE_{d.upper()}_DATABASE_URL" for d in DATABASES}
            else:
                process = service["command"][1]
                assert urls == {f"MAILLAGE_{process.upper()}_DATABASE_URL"}, name
                assert f"maillage_{process}:" in service["environment"][f"MAILLAGE_{process.upper()}_DATABASE_URL"]


# --- the settings: what the code reads is what deployments set -------------------------------------------


class TestSettingsCoverage:
    def test_compose_sets_exactly_the_settings_the_processes_read(self) -> None:
        set_by_compose: set[str] = set()
        for service in _maillage_services(_compose()).values():
            set_by_compose |= set(service["environment"])
        assert set_by_compose == _deployed_settings()

    def test_kubernetes_sets_exactly_the_settings_the_processes_read(self) -> None:
        configmap = _configmap()
        set_by_k8s: set[str] = set()
        for name, pod in _pod_specs():
            for container in pod["containers"]:
                assert {"configMapRef": {"name": "maillage-config"}} in container["envFrom"], name
                set_by_k8s |= set(configmap) | {entry["name"] for entry in container["env"]}
        assert set_by_k8s == _deployed_settings()

    def test_configmap_values_are_valid_settings(self) -> None:
        values: dict[str, Any] = {k.removeprefix("MAILLAGE_").lower(): v for k, v in _configmap().items() if v}
        assert set(values) <= set(Settings.model_fields)
        settings = Settings(_env_file=None, **values)  # raises when one is invalid
        assert settings.topic_replication == 3 and settings.host == "0.0.0.0"  # noqa: S104 (containers listen on their own interface)
        assert topic_config(settings.topic_replication) == {"min.insync.replicas": "2"}  # one broker may be down
        assert settings.kafka_idempotent_producer  # Kafka's: production's default

    def test_not_deployed_settings_exist(self) -> None:
        assert set(NOT_DEPLOYED) <= set(Settings.model_fields)

    def test_an_empty_variable_takes_the_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MAILLAGE_MATCH_K", "")  # compose passes unset settings as ""
        monkeypatch.setenv("MAILLAGE_DB_POOL_MAX", "25")
        settings = Settings(_env_file=None)
        assert settings.match_k == Settings.model_fields["match_k"].default
        assert settings.db_pool_max == 25


# --- the commands compose, the image and the manifests run -------------------------------------------------


def _commands() -> list[tuple[str, list[str]]]:
    found = [(f"compose {name}", list(service["command"])) for name, service in _maillage_services(_compose()).items()]
    for name, pod in _pod_specs():
        for container in pod["containers"]:
            found.append((f"k8s {name}", list(container["args"])))
    for name, service in _maillage_services(_compose()).items():
        test = service.get("healthcheck", {}).get("test")
        if test:
            assert test[:2] == ["CMD", "maillage"], name
            found.append((f"compose {name} healthcheck", test[2:]))
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert entrypoint == ["maillage"]
    found.append(("Dockerfile CMD", json.loads(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))))  # type: ignore[union-attr]
    return found


@pytest.mark.parametrize(("where", "args"), _commands(), ids=lambda v: v if isinstance(v, str) else shlex.join(v))
def test_every_command_deployments_run_exists(where: str, args: list[str]) -> None:
    group: Any = typer.main.get_command(cli_app)  # typer's own (vendored) click Group
    # Parse as the real command would (unknown commands, options and choices fail here) without running it.
    with group.make_context("maillage", args[:1]) as ctx:
        command = group.get_command(ctx, args[0])
        assert command is not None, f"{where}: no command {args[0]}"
        command.make_context(args[0], args[1:], parent=ctx)
    result = CliRunner().invoke(cli_app, [*args, "--help"])
    assert result.exit_code == 0, f"{where}: {result.output}"


def test_a_misspelt_role_would_be_caught() -> None:
    group: Any = typer.main.get_command(cli_app)
    with group.make_context("maillage", ["serve"]) as ctx:
        command = group.get_command(ctx, "serve")
        with pytest.raises(typer.BadParameter, match="wrker"):
            command.make_context("serve", ["matching", "--role", "wrker"], parent=ctx)
        assert group.get_command(ctx, "serv") is None


def test_a_missing_signing_key_stops_startup_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env["MAILLAGE_INTERNAL_KEY"] = "i" * 64
    maillage = Path(sys.executable).parent / "maillage"
    result = subprocess.run(
        [str(maillage), "serve", "directory", "--role", "api"],
        cwd=tmp_path,  # no .env there
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MAILLAGE_JWT_KEYS is not set" in result.stderr
    assert "Traceback" not in result.stderr


# --- the image -----------------------------------------------------------------------------------------


class TestDockerfile:
    text = (DEPLOY / "Dockerfile").read_text()

    def test_multi_stage_slim_and_unprivileged(self) -> None:
        stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", self.text, re.M)
        assert [alias for _, alias in stages] == ["build", "runtime"]
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim", self.text, re.M)
        users = re.findall(r"^USER (\S+)$", self.text, re.M)
        assert users and users[-1].split(":")[0] not in ("root", "0")
        assert "COPY --from=build /opt/maillage /opt/maillage" in self.text

    def test_dependencies_come_from_the_constraints_file(self) -> None:
        installs = re.findall(r"pip install ([^\n\\]+)", self.text)
        assert installs and all("--constraint constraints.txt" in line for line in installs)

    def test_the_build_context_holds_what_the_image_copies(self) -> None:
        copied = re.findall(r"^COPY (?!--from)(.+) \S+$", self.text, re.M)
        allowed = (ROOT / ".dockerignore").read_text()
        for group in copied:
            for source in group.split():
                assert (ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}" in allowed, f"{source} is excluded by .dockerignore"


# --- Kubernetes -----------------------------------------------------------------------------------------


class TestKubernetes:
    @pytest.mark.parametrize("version", K8S_VERSIONS)
    def test_manifests_validate(self, version: str) -> None:
        count = 0
        for _, doc in _manifests():
            if doc["kind"] == "Kustomization":
                continue
            kubernetes_validate.validate(doc, version, strict=True)
            count += 1
        assert count >= 14

    def test_a_broken_manifest_is_refused(self) -> None:
        doc = next(doc for _, doc in _manifests() if doc["kind"] == "Deployment")
        broken = copy.deepcopy(doc)
        broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {"name": "http"}
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)

    def test_kustomization_applies_everything_but_the_secret_example(self) -> None:
        (kustomization,) = (doc for _, doc in _manifests() if doc["kind"] == "Kustomization")
        files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
        assert set(kustomization["resources"]) == files

    def test_api_and_worker_are_separate_deployments_with_probes_and_limits(self) -> None:
        deployments = {doc["metadata"]["name"]: doc for _, doc in _manifests() if doc["kind"] == "Deployment"}
        assert set(deployments) == {f"{s}-{r}" for s in SERVICES for r in ("api", "worker")} | {"gateway"}
        for name, doc in deployments.items():
            pod = doc["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            (container,) = pod["containers"]
            assert container["image"].startswith(IMAGE + ":")
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["resources"]["requests"]["cpu"], name
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()

    def test_services_route_to_the_api_deployments(self) -> None:
        labels = {
            doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["labels"]
            for _, doc in _manifests()
            if doc["kind"] == "Deployment"
        }
        services = [doc for _, doc in _manifests() if doc["kind"] == "Service"]
        assert {s["metadata"]["name"] for s in services} == {f"{s}-api" for s in SERVICES} | {"gateway"}
        for service in services:
            assert service["spec"]["selector"].items() <= labels[service["metadata"]["name"]].items()
        urls = {v for k, v in _configmap().items() if k.endswith("_URL") and "PUBLIC" not in k}
        assert urls == {f"http://{s['metadata']['name']}:{s['spec']['ports'][0]['port']}" for s in services} - {
            "http://gateway:8100"
        }

    def test_every_secret_reference_exists_in_the_secret_example(self) -> None:
        (secret,) = (doc for _, doc in _manifests() if doc["kind"] == "Secret")
        for name, pod in _pod_specs():
            for container in pod["containers"]:
                for entry in container["env"]:
                    ref = entry["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == secret["metadata"]["name"]
                    assert ref["key"] in secret["stringData"], f"{name}: {ref['key']}"

    def test_only_the_gateway_is_meant_for_the_outside_and_no_service_exposes_metrics(self) -> None:
        kinds = {doc["kind"] for _, doc in _manifests()}
        assert not kinds & {"Ingress", "IngressRoute", "Gateway", "HTTPRoute"}, "the operator routes to the gateway"
        for _, doc in _manifests():
            if doc["kind"] != "Service":
                continue
            name, spec = doc["metadata"]["name"], doc["spec"]
            assert spec["type"] == "ClusterIP", name
            assert "externalIPs" not in spec and all("nodePort" not in port for port in spec["ports"]), name
            assert [port["name"] for port in spec["ports"]] == ["http"], f"{name}: metrics are scraped from the pods"
        assert urlsplit(_configmap()["MAILLAGE_PUBLIC_URL"]).scheme == "https"
        assert not {"MAILLAGE_PUBLIC_APP_URL", "MAILLAGE_PUBLIC_EVENTS_URL"} & set(_configmap())

    def test_prometheus_scrapes_every_process_on_its_metrics_port(self) -> None:
        assert _configmap()["MAILLAGE_GATEWAY_METRICS_PORT"] == "", "the annotation below assumes the default"
        for _, doc in _manifests():
            if doc["kind"] != "Deployment":
                continue
            name = doc["metadata"]["name"]
            annotations = doc["spec"]["template"]["metadata"]["annotations"]
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            ports = {port["name"]: port["containerPort"] for port in container["ports"]}
            assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
            if name == "gateway":  # its public port has no /metrics
                assert ports == {
                    "http": DEFAULT_PORTS["gateway"],
                    "metrics": Settings.model_fields["gateway_metrics_port"].default,
                }
                assert annotations["prometheus.io/port"] == str(ports["metrics"])
            else:
                assert annotations["prometheus.io/port"] == str(ports["http"]) == str(DEFAULT_PORTS[name.split("-")[0]])

    def test_the_matching_worker_scales_no_further_than_its_partitions(self) -> None:
        (hpa,) = (doc for _, doc in _manifests() if doc["kind"] == "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"]["name"] == "matching-worker"
        partitions = {spec.name: spec.partitions for spec in TOPICS}
        read = {
            topic
            for service, _, topics, _ in consumer_groups(Settings.model_construct())
            for topic in topics
            if service == "matching"
        }
        assert hpa["spec"]["maxReplicas"] <= max(partitions[topic] for topic in read)
        (worker,) = (
            d for _, d in _manifests() if d["kind"] == "Deployment" and d["metadata"]["name"] == "matching-worker"
        )
        assert "replicas" not in worker["spec"], "the HPA owns the replica count"


# --- AsyncAPI -------------------------------------------------------------------------------------------


class TestAsyncAPI:
    path = DEPLOY / "asyncapi.yaml"

    def test_the_file_is_up_to_date(self) -> None:
        assert self.path.read_text() == render(), "regenerate: maillage asyncapi --output deploy/asyncapi.yaml"

    def test_it_validates_against_the_asyncapi_3_schema(self) -> None:
        schema = _schema("asyncapi-3.0.0.json")
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(yaml.safe_load(self.path.read_text()))]
        assert errors == []

    def test_the_schema_catches_a_broken_document(self) -> None:
        schema = _schema("asyncapi-3.0.0.json")
        validator = jsonschema.validators.validator_for(schema)(schema)
        broken = yaml.safe_load(self.path.read_text())
        next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording
        assert list(validator.iter_errors(broken))

    def test_the_gateway_reads_every_type_its_subscriptions_follow(self) -> None:
        doc = yaml.safe_load(self.path.read_text())
        read = {m["$ref"].rsplit("/", 1)[1] for m in doc["operations"]["gatewayReceivesMatchingMatch"]["messages"]}
        assert read == {REGISTRY[ce_type].__name__ for ce_type in FOUND | UPDATED}
        assert "MatchViewed" in read  # a match viewed reaches an open need page live

    def test_every_topic_and_event_type_is_described_and_every_reference_resolves(self) -> None:
        doc = yaml.safe_load(self.path.read_text())
        channels = {c["address"]: c for c in doc["channels"].values()}
        assert {spec.name: spec.partitions for spec in TOPICS} == {
            a: c["bindings"]["kafka"]["partitions"] for a, c in channels.items()
        }
        # Every contract type is on a planned topic (tests may register their own types on theirs).
        contract = {t: m for t, m in REGISTRY.items() if not t.startswith("org.maillage.test.")}
        assert {m.topic for m in contract.values()} <= set(channels)
        assert {m["name"] for m in doc["components"]["messages"].values()} == set(contract)
        for ce_type, model in contract.items():
            message = doc["components"]["messages"][model.__name__]
            assert message["name"] == ce_type
            assert model.__name__ in channels[model.topic]["messages"]
            assert set(doc["components"]["schemas"][model.__name__]["properties"]) == set(model.model_fields)

        def refs(node: Any) -> Iterator[str]:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "$ref":
                        yield value
                    else:
                        yield from refs(value)
            elif isinstance(node, list):
                for item in node:
                    yield from refs(item)

        found = list(refs(doc))
        assert len(found) > 50
        for ref in found:
            target: Any = doc
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            assert isinstance(target, dict), ref


# --- PostgreSQL's init script ---------------------------------------------------------------------------


def test_the_postgres_init_script_creates_every_extension_the_migrations_use() -> None:
    script = (DEPLOY / "postgres" / "init-databases.sh").read_text()
    for extension in EXTENSIONS:
        assert f"CREATE EXTENSION IF NOT EXISTS {extension};" in script
    assert re.search(r"for service in ([a-z ]+); do", script).group(1).split() == list(DATABASES)  # type: ignore[union-attr]
