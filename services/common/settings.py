"""The one settings object: every knob of every process, read from `MAILLAGE_*` variables."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("directory", "events", "matching")
PROCESSES = (*SERVICES, "gateway")
DATABASES = (*SERVICES, "gateway")  # the gateway keeps partner credentials in its own
ServiceName = Literal["directory", "events", "matching"]

# Settings a deployment (compose, Kubernetes) does not set, and why; every other setting is
# set by both (tests/unit/test_deploy.py compares the sets).
NOT_DEPLOYED = {
    "home": "data directory of the embedded stack only",
    "postgres_port": "port of the embedded PostgreSQL only",
    "kafka_port": "port of the embedded broker only",
    "dev_broker": "which broker the embedded stack starts",
    "database_url": "fallback for the per-service URLs, which deployments give with one role per service",
}

DEFAULT_PORTS = {"gateway": 8100, "directory": 8101, "events": 8102, "matching": 8103}


class Settings(BaseSettings):
    """Configuration shared by the services, the gateway, the CLI and the embedded stack.

    Each field is read from the environment variable `MAILLAGE_<FIELD>` (upper case);
    `.env` and the embedded stack's `.maillage/dev.env` are read too, environment first.
    """

    model_config = SettingsConfigDict(
        env_prefix="MAILLAGE_",
        env_file=(".env", ".maillage/dev.env"),
        extra="ignore",
        # An empty variable means "the default": compose passes every setting through as
        # `${MAILLAGE_X:-}` and Kubernetes ConfigMaps may leave a key empty.
        env_ignore_empty=True,
        # Settings with a deprecated variable read both names (`validation_alias`); code sets them by field name.
        populate_by_name=True,
    )

    # --- where things are -------------------------------------------------------
    home: str = Field(".maillage", description="Directory for the embedded stack's data")
    dev_broker: Literal["tansu", "kafka"] = Field(
        "tansu",
        description="Broker of the embedded stack: tansu (Python only, memory) or kafka (Apache Kafka, needs Java)",
    )
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:55432/postgres",
        description="PostgreSQL server URL; each service uses its own database on it",
    )
    directory_database_url: str | None = Field(
        None, description="Directory's database (default: database_url with maillage_directory)"
    )
    events_database_url: str | None = Field(
        None, description="Events' database (default: database_url with maillage_events)"
    )
    matching_database_url: str | None = Field(
        None, description="Matching's database (default: database_url with maillage_matching)"
    )
    gateway_database_url: str | None = Field(
        None, description="Gateway's database of partner credentials (default: database_url with maillage_gateway)"
    )
    db_pool_min: int = Field(2, description="Minimum connections per process pool")
    db_pool_max: int = Field(10, description="Maximum connections per process pool")
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers")
    topic_replication: int = Field(
        1,
        ge=1,
        description="Replication factor of the topics created; their min.insync.replicas is a majority of it "
        "(the topic plan)",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to reach the brokers (managed Kafka: usually SASL_SSL)"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism when the protocol is SASL_*"
    )
    kafka_sasl_username: str = Field("", description="SASL user")
    kafka_sasl_password: str = Field("", description="SASL password")
    kafka_ssl_cafile: str = Field("", description="CA bundle verifying the brokers (empty: the system's)")
    # Producer durability (issue 21). On by default, as production's Apache Kafka expects; the embedded Tansu
    # broker refuses it, so the starters of Tansu (`maillage dev`, the tests, the benches) turn it off.
    kafka_idempotent_producer: bool = Field(
        True,
        description="Idempotent producer (no duplicate or reordering from a producer's own retries); off for "
        "the embedded Tansu broker, which refuses it. Nothing relies on it: consumers are idempotent",
    )

    # --- ports and URLs ---------------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface the HTTP servers bind to")
    postgres_port: int = Field(55432, description="Port of the embedded PostgreSQL")
    kafka_port: int = Field(19092, description="Port of the embedded broker")
    gateway_port: int = Field(DEFAULT_PORTS["gateway"], description="Gateway HTTP port")
    gateway_metrics_port: int = Field(
        8104, description="Gateway port of its Prometheus metrics (internal: never publish)"
    )
    directory_port: int = Field(DEFAULT_PORTS["directory"], description="Directory HTTP port")
    events_port: int = Field(DEFAULT_PORTS["events"], description="Events HTTP port")
    matching_port: int = Field(DEFAULT_PORTS["matching"], description="Matching HTTP port")
    directory_url: str = Field("http://127.0.0.1:8101", description="Directory base URL")
    events_url: str = Field("http://127.0.0.1:8102", description="Events base URL")
    matching_url: str = Field("http://127.0.0.1:8103", description="Matching base URL")

    # --- identities -------------------------------------------------------------
    jwt_keys: str = Field(
        "",
        description='Public-token signing keys as JSON {"kid": "secret", ...}; all verify',
    )
    jwt_active_kid: str = Field("", description="kid of the key that signs new tokens")
    jwt_issuer: str = Field("maillage", description="iss of public tokens")
    jwt_audience: str = Field("maillage-api", description="aud of public tokens")
    internal_key: str = Field("", description="Key the gateway signs forwarded identities with; services verify it")
    internal_token_ttl_s: int = Field(60, description="Lifetime of a forwarded identity")

    # --- messaging --------------------------------------------------------------
    outbox_poll_interval_s: float = Field(1.0, description="Relay polling period when no NOTIFY wakes it")
    outbox_batch_size: int = Field(1000, description="Outbox rows published per relay round")
    outbox_retention_hours: int = Field(168, description="How long sent outbox rows are kept")
    idempotency_retention_hours: int = Field(
        24,
        ge=1,
        description="How long a creation's Idempotency-Key and first answer are kept (a retry within it gets "
        "that answer)",
    )
    inbox_retention_hours: int = Field(
        720, description="How long consumers remember processed event ids (> outbox retention)"
    )
    consumer_max_retries: int = Field(3, description="Attempts before a message goes to the DLQ")
    consumer_retry_backoff_s: float = Field(0.2, description="First retry delay (doubles)")
    consumer_session_timeout_ms: int = Field(10_000, description="Consumer session timeout (real Kafka refuses < 6000)")
    consumer_fetch_max_wait_ms: int = Field(
        50,
        description="Longest the broker holds an empty fetch (a delivery may wait this; lower polls more)",
    )
    worker_restart_limit: int = Field(
        5,
        ge=0,
        description="Restarts of a worker loop that ended unexpectedly, within the window, before its process exits 1",
    )
    worker_restart_window_s: float = Field(
        300.0, gt=0, description="Window over which a worker loop's unexpected ends are counted"
    )

    # --- matching: the score and its weights (one place; see services/matching/scoring.py) -----
    match_k: int = Field(20, ge=1, le=200, description="Matches kept per need (top K)")
    match_min_score: float = Field(0.35, ge=0, le=1, description="Score under which an actor is not matched")
    match_min_score_unconfirmed: float = Field(
        0.63,
        ge=0,
        le=1,
        description="Score under which an actor is not matched when it lacks some of the need's themes and its own"
        " words do not answer it",
    )
    match_min_answering_evidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Word evidence (0.25 a distinctive word, 1 a concept) in an actor's own words that answers a need;"
        " a need whose text says what it asks and none of whose candidates reaches it gets no match (0: off)",
    )
    match_weight_themes: float = Field(0.35, ge=0, description="Weight of the theme overlap")
    match_weight_service_types: float = Field(0.15, ge=0, description="Weight of the service-type overlap")
    match_weight_distance: float = Field(0.25, ge=0, description="Weight of closeness to the need's place")
    match_weight_text: float = Field(
        0.15,
        ge=0,
        description="Weight of the text evidence (the actor's words against the need's, with the field's synonyms)",
    )
    match_weight_qpv: float = Field(0.10, ge=0, description="Weight of being in a QPV when the need asks for it")
    # The doors of issue 23 (services/contracts/doors.py): each weight in [0, 1] is the fraction of a shared theme
    # that an actor coming only through that door is credited in the theme part; 0 closes the door.
    match_weight_related_theme: float = Field(
        0.6, ge=0, le=1, description="Credit of a related theme (times the relation's weight) against a shared one"
    )
    match_weight_text_door: float = Field(
        0.6, ge=0, le=1, description="Credit of an actor whose own words name the need's concepts, without its themes"
    )
    match_weight_service_type_door: float = Field(
        0.6, ge=0, le=1, description="Credit of an actor offering the service type that is the need's point (premises)"
    )
    match_door_budget: int = Field(
        10, ge=1, le=500, description="Candidates each extra door (related theme, text, service type) may add per need"
    )
    match_distance_scale_km: float = Field(
        15.0, gt=0, description="Distance at which the closeness term has fallen to 1/e"
    )
    match_max_interested: int = Field(
        5, ge=1, description="Interested actors after which a need's new matches are no longer notified"
    )
    need_expiry_interval_s: float = Field(30.0, gt=0, description="How often needs past their deadline expire")

    # --- notifications: e-mail and webhooks -----------------------------------------------
    smtp_host: str = Field("127.0.0.1", description="SMTP server")
    smtp_port: int = Field(1025, description="SMTP port (the embedded stack runs a local sink there)")
    smtp_username: str = Field("", description="SMTP user (empty: no login)")
    smtp_password: str = Field("", description="SMTP password")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS")
    smtp_sender: str = Field("Maillage <notifications@maillage.localhost>", description="From: of e-mails")
    public_url: str = Field(
        "http://127.0.0.1:8100",
        # MAILLAGE_PUBLIC_APP_URL, its former name, is still read so that an upgraded .env keeps its links.
        validation_alias=AliasChoices("MAILLAGE_PUBLIC_URL", "MAILLAGE_PUBLIC_APP_URL"),
        description="The gateway's public base URL: every link in e-mails, feeds and JSON-LD "
        "(was MAILLAGE_PUBLIC_APP_URL, still read)",
    )
    email_enabled: bool = Field(True, description="Send e-mails (off: they are only recorded)")
    webhook_allow_private: bool = Field(
        False,
        description="Let webhooks reach private and loopback addresses (tests, make run); link-local and cloud "
        "metadata addresses stay refused",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="Timeout of one webhook request")
    webhook_max_attempts: int = Field(8, ge=1, description="Attempts before a delivery is abandoned")
    webhook_retry_base_s: float = Field(2.0, gt=0, description="First retry delay of a webhook (doubles, jittered)")

    # --- the GraphQL gateway: browsers, limits and protection -----------------------------
    cors_origins: str = Field(
        "", description="Origins of browser partner apps allowed to call the gateway, comma-separated (* for any)"
    )
    gateway_max_depth: int = Field(10, ge=2, description="Deepest nesting of fields a query may ask for")
    gateway_max_tokens: int = Field(2000, ge=100, description="Most lexical tokens in one GraphQL document")
    gateway_max_aliases: int = Field(30, ge=1, description="Most aliases in one GraphQL document")
    gateway_max_page_size: int = Field(100, ge=1, le=100, description="Largest `first` of a connection")
    gateway_max_cost: int = Field(
        5000,
        ge=1,
        description="Largest estimated cost of a query: the items its lists may hold, page sizes multiplied along "
        "each path (`first`, else 20), summed",
    )
    gateway_max_body_bytes: int = Field(65_536, ge=1024, description="Largest GraphQL request body")
    gateway_request_timeout_s: float = Field(10.0, gt=0, description="Longest a GraphQL request may run")
    gateway_upstream_timeout_s: float = Field(5.0, gt=0, description="Timeout of one call to a service")
    # The web console (gateway/console/).
    console_secure_cookies: bool = Field(
        True,
        description="Session and form cookies only over HTTPS (the embedded stack, on plain http://127.0.0.1, turns "
        "it off)",
    )
    console_session_idle_s: int = Field(
        7200, ge=60, description="A console session unused for this long ends (seconds)"
    )
    console_session_absolute_s: int = Field(
        43_200, ge=300, le=30 * 86_400, description="A console session ends this long after sign-in (seconds)"
    )
    console_sign_in_per_address_per_hour: int = Field(
        5, ge=1, description="Sign-in links one e-mail address may ask for in an hour (known or not)"
    )
    console_sign_in_per_ip_per_hour: int = Field(
        30, ge=1, description="Sign-in links one client address may ask for in an hour"
    )
    gateway_credential_timeout_s: float = Field(
        2.0, gt=0, description="Longest the gateway waits for its database to check a credential (then 503)"
    )
    gateway_rate_limit_per_minute: int = Field(
        600, ge=1, description="Requests per minute per credential (anonymous: per client address), per replica"
    )
    gateway_rate_limit_burst: int = Field(60, ge=1, description="Requests a credential may send at once")
    gateway_max_input_depth: int = Field(
        16, ge=2, le=256, description="Deepest nesting of arrays and objects in a GraphQL request's variables"
    )
    gateway_max_operations_per_connection: int = Field(
        25, ge=1, description="Most GraphQL operations one WebSocket connection may have running (subscriptions too)"
    )
    gateway_max_subscriptions_per_connection: int = Field(
        10, ge=1, description="Most subscriptions one WebSocket connection may hold"
    )
    gateway_max_connections_per_credential: int = Field(
        20, ge=1, description="Most WebSocket connections one credential (anonymous: one address) may hold, per replica"
    )
    gateway_connection_check_s: float = Field(
        5.0,
        gt=0,
        le=5,
        description="How often open WebSockets' credentials are read again, should a revocation go unheard",
    )

    # --- observability ----------------------------------------------------------
    log_level: str = Field("INFO", description="Log level")
    log_format: Literal["json", "text"] = Field("json", description="Log format")

    @field_validator("consumer_session_timeout_ms")
    @classmethod
    def _session_timeout_floor(cls, value: int) -> int:
        if value < 6000:
            raise ValueError("must be at least 6000 ms (the floor of a real Kafka broker)")
        return value

    def database_url_for(self, service: str) -> str:
        """The URL of one service's own database."""
        explicit = getattr(self, f"{service}_database_url", None)
        if explicit:
            return str(explicit)
        return with_database(self.database_url, f"maillage_{service}")

    def port_for(self, process: str) -> int:
        return int(getattr(self, f"{process}_port"))

    def url_for(self, service: str) -> str:
        return str(getattr(self, f"{service}_url")).rstrip("/")

    def public_link(self, path: str) -> str:
        """The address people follow to `path` (it starts with /): always on the gateway, never on a service."""
        return self.public_url.rstrip("/") + path

    def signing_keys(self) -> dict[str, str]:
        """The public-token keys by kid (empty when none are configured)."""
        if not self.jwt_keys.strip():
            return {}
        keys = json.loads(self.jwt_keys)
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in keys.items()
        ):
            raise ValueError('MAILLAGE_JWT_KEYS must be a JSON object {"kid": "secret"}')
        return keys


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_table() -> str:
    """The configuration table of the README: every variable, its default and its meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default not in (None, "") else "—"
        rows.append(f"| `MAILLAGE_{name.upper()}` | `{default}` | {field.description or ''} |")
    return "\n".join(rows)
