"""Settings from the environment (CHATPRO_*, DATABASE_URL), overridable by command-line flags."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = "data"
DEFAULT_DATABASE_URL = "sqlite:///data/chatpro-privacy.sqlite3"
DEFAULT_SECRET_KEY_FILE = "data/secret.key"
DEFAULT_RECEIPT_KEY_FILE = "data/receipt-signing.key"
DEFAULT_MASTER_KEY_FILE = "data/master.key"
# The key store is a database of its own, apart from the content: restoring a content
# backup must not bring back a destroyed key.
DEFAULT_KEY_STORE_URL = "sqlite:///data/keys.sqlite3"
DEFAULT_BLOB_DIR = "data/blobs"
# Signed checkpoints of the audit trail (SEC-5): outside the database, appended by the sweep.
DEFAULT_AUDIT_CHECKPOINT_FILE = "data/audit-checkpoints.jsonl"
# "default" is argon2-cffi's RFC 9106 low-memory profile; "test" is for test suites alone
# (see ``domain/kernel/passwords.py``), so no variable or flag can select it.
PASSWORD_HASH_PROFILES = ("default", "test")
MAX_SERVE_WORKERS = 64
# The largest message either way, request or response; list RPCs cut their pages to fit.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""


@dataclass(frozen=True)
class PolicySettings:
    """Numbers the privacy policy fixes, or leaves to configuration."""

    age_of_digital_consent: int = 13
    session_lifetime: dt.timedelta = dt.timedelta(days=30)
    guardian_token_lifetime: dt.timedelta = dt.timedelta(days=14)
    email_token_lifetime: dt.timedelta = dt.timedelta(days=2)
    unconfirmed_child_retention: dt.timedelta = dt.timedelta(days=14)
    registration_request_retention: dt.timedelta = dt.timedelta(days=1)
    guardian_session_lifetime: dt.timedelta = dt.timedelta(hours=1)
    guardian_access_token_lifetime: dt.timedelta = dt.timedelta(days=1)
    guardian_access_requests_per_hour: int = 3
    account_setup_token_lifetime: dt.timedelta = dt.timedelta(days=14)
    # ChatPro's own retention schedule (RET-4), enforced by the sweeps.
    session_record_retention: dt.timedelta = dt.timedelta(days=30)  # after expiry or sign-out
    device_record_retention: dt.timedelta = dt.timedelta(days=365)  # after last use
    correspondence_retention: dt.timedelta = dt.timedelta(days=730)
    outbox_retention: dt.timedelta = dt.timedelta(days=30)  # once every consumer has it
    outbox_max_retention: dt.timedelta = dt.timedelta(days=365)
    provisioned_account_retention: dt.timedelta = dt.timedelta(days=30)  # never set up
    deletion_feed_retention: dt.timedelta = dt.timedelta(days=90)  # apps sync within this
    installation_event_retention: dt.timedelta = dt.timedelta(days=365)  # after recorded
    # Single-use confirmations and links (email, guardian, account set-up): after they expire.
    confirmation_record_retention: dt.timedelta = dt.timedelta(days=30)
    # Correspondence kept at an erasure for a stated legal reason (RGT-3): the UK's six-year
    # limitation period for claims, from when it was kept.
    kept_correspondence_retention: dt.timedelta = dt.timedelta(days=6 * 365 + 2)
    # RET-2: unused this many calendar months, an account expires; it is warned this many
    # calendar months before.
    account_inactivity_months: int = 6
    account_expiry_warning_months: int = 1
    # Per-peer rate limits (SEC-3): calls per window from one address.
    register_per_peer: int = 100
    sign_in_per_peer: int = 300
    peer_rate_window: dt.timedelta = dt.timedelta(minutes=10)
    # RGT-8: a request never stalls. An organisation whose part waits is reminded this often;
    # the data privacy manager is warned this many days before a request's due date.
    rights_reminder_interval: dt.timedelta = dt.timedelta(days=7)
    rights_due_warning_days: int = 7
    # RGT-6: how long a third party's grant to fetch a portability export lasts.
    export_grant_lifetime: dt.timedelta = dt.timedelta(days=14)
    # Failed sign-ins (SEC-3, issue 15) are counted per account at an address and per
    # address, with delays that grow: past its free failures a key waits the first delay
    # after a failure, doubled with each further one up to the longest delay, and forgets one
    # failure every so often. No key is ever held back longer than the longest delay, and an
    # account's failures at one address hold nobody back at another.
    sign_in_free_failures: int = 5  # per account (whichever login names it) at one address
    sign_in_address_free_failures: int = 100  # per address, whichever accounts
    sign_in_first_delay: dt.timedelta = dt.timedelta(seconds=1)
    sign_in_max_delay: dt.timedelta = dt.timedelta(seconds=60)
    sign_in_forget_one_every: dt.timedelta = dt.timedelta(minutes=15)
    sign_in_address_forget_one_every: dt.timedelta = dt.timedelta(seconds=36)  # 100 an hour


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1:50051"
    database_url: str = DEFAULT_DATABASE_URL
    log_format: str = "auto"  # json | console | auto (console on a terminal)
    log_level: str = "info"
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    secret_key: bytes = field(default=b"", repr=False)
    # Ed25519 private key (32-byte seed) that signs consent receipts (CON-7).
    receipt_signing_key: bytes = field(default=b"", repr=False)
    # Wraps every organisation's key, which wraps its members' data keys (envelope keys).
    master_key: bytes = field(default=b"", repr=False)
    key_store_url: str = DEFAULT_KEY_STORE_URL
    blob_dir: str = DEFAULT_BLOB_DIR
    audit_checkpoint_file: str = DEFAULT_AUDIT_CHECKPOINT_FILE
    sqlite_synchronous: str = "FULL"
    # PostgreSQL: the hot statements prepared once per connection (storage/prepared.py).
    # Off behind a pooler in transaction mode, which gives a session's statements to others.
    prepared_statements: bool = True
    password_hash_workers: int = 2  # registrations, password changes, account set-up
    # Sign-in hashes on threads of its own, and its calls on call workers of their own, so
    # that a flood of password changes or registrations cannot starve it (issue 15).
    sign_in_hash_workers: int = 2
    sign_in_call_workers: int = 4
    password_hash_profile: str = "default"
    grace_period_seconds: float = 10.0
    sweep_interval_seconds: float = 3600.0
    plugin_timeout_seconds: float = 2.0
    plugin_fault_limit: int = 3
    # Each organisation's plugin budget (its own worker process): calls at once and memory.
    plugin_concurrency: int = 4
    plugin_memory_mb: int = 512
    # The user plugin workers run as when the server runs as root.
    plugin_user: str = "nobody"
    # Threads the built-in defaults' export streams are pulled on, in the server process
    # (organisations' own plugins run in their worker processes).
    plugin_workers: int = 16
    # Calls inside the database at once, each on a worker thread with a connection of its
    # own (so also the size of the connection pool). None: 16 on PostgreSQL, where a slow
    # network wants many in flight; 4 on SQLite, whose single writer gains nothing from more.
    call_workers: int | None = None
    # SQLite only: GetAccount, RecordDeviceUse, GrantConsent, SendMessage and ListMessages run
    # on the server's own loop when no other writer holds the database (edge/inline_calls.py).
    # None: on for SQLite; False: every call on the call workers. Refused on PostgreSQL.
    inline_calls: bool | None = None
    # `serve --workers N`: server processes on the one address (SO_REUSEPORT), see replicas.py.
    serve_workers: int = 1
    # `serve --insecure`: plaintext on an address other hosts reach. Refused otherwise: every
    # call carries a bearer token and personal data.
    insecure: bool = False
    # Work calls the server accepts at once (running or waiting for a worker); more are
    # refused RESOURCE_EXHAUSTED (edge/admission.py). Health watches have a budget apart.
    max_concurrent_calls: int = 1000
    # Prometheus metrics on their own port ("host:port"), off when None; with --workers N,
    # worker i serves on port + i. The database figures are read every refresh interval.
    metrics_address: str | None = None
    metrics_refresh_seconds: float = 30.0
    # Capacity that no one client can take (issue 15); see edge/admission.py and README.
    calls_per_principal: int = 32  # one person's (or guardian's) session
    calls_per_service: int = 500  # one internal service, which acts for many people
    max_watches: int = 1000  # Health/Watch and reflection streams, a budget apart
    watches_per_address: int = 8
    streams_per_connection: int = 100  # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
    # A client stream (an upload) that sends nothing for this long is ended.
    stream_idle_seconds: float = 30.0
    # The connection: pinged after this long without traffic, dropped if the ping is not
    # answered within the timeout; clients may ping every 10 s at most; a connection with no
    # call for the idle time is closed; every connection is closed after the age (so that
    # replicas behind a balancer even out), its calls having the grace to finish.
    keepalive_seconds: float = 60.0
    keepalive_timeout_seconds: float = 20.0
    min_client_ping_seconds: float = 10.0
    max_connection_idle_seconds: float = 900.0
    max_connection_age_seconds: float = 3600.0
    max_connection_age_grace_seconds: float = 3600.0
    # Call recordings: chunks per upload, the least a chunk other than the last may hold,
    # uploads in flight per organisation in one process.
    upload_max_chunks: int = 32_768
    upload_min_chunk_bytes: int = 64 * 1024
    uploads_per_organisation: int = 50
    policy: PolicySettings = field(default_factory=PolicySettings)

    def with_overrides(self, **overrides: Any) -> Settings:
        policy_keys = {f for f in PolicySettings.__dataclass_fields__}
        policy_changes = {k: v for k, v in overrides.items() if k in policy_keys and v is not None}
        top = {k: v for k, v in overrides.items() if k not in policy_keys and v is not None}
        result = replace(self, **top)
        if policy_changes:
            result = replace(result, policy=replace(result.policy, **policy_changes))
        result.validate()
        return result

    @property
    def call_worker_count(self) -> int:
        if self.call_workers is not None:
            return self.call_workers
        return 4 if self.database_url.startswith("sqlite") else 16

    @property
    def runs_inline(self) -> bool:
        sqlite = self.database_url.startswith("sqlite")
        return sqlite if self.inline_calls is None else self.inline_calls and sqlite

    def plaintext_refusal(self) -> str | None:
        """Why serving as configured would be refused: plaintext (no TLS) on an address
        other hosts can reach, without ``--insecure``. None when it may serve."""
        if self.tls_cert_file or self.insecure or is_loopback(self.address):
            return None
        return (
            f"refusing to serve plaintext on {self.address}, which other hosts can reach: "
            "give a TLS certificate and key (--tls-cert, --tls-key), listen on a loopback "
            "address (127.0.0.1), or pass --insecure to accept it explicitly"
        )

    def validate(self) -> None:
        if self.log_format not in {"json", "console", "auto"}:
            raise SettingsError(
                f"log format must be json, console or auto, not {self.log_format!r}"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("TLS needs both a certificate and a key file")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise SettingsError("client certificates (mTLS) need the server's TLS cert and key")
        if not 1 <= self.policy.age_of_digital_consent <= 18:
            raise SettingsError("the age of digital consent must be between 1 and 18")
        if (
            not dt.timedelta(days=1)
            <= self.policy.rights_reminder_interval
            <= dt.timedelta(days=30)
        ):
            raise SettingsError("organisations are reminded every 1 to 30 days")
        if not 1 <= self.policy.rights_due_warning_days <= 30:
            raise SettingsError("the due-date warning comes 1 to 30 days ahead")
        if self.policy.session_lifetime <= dt.timedelta(0):
            raise SettingsError("the session token lifetime must be positive")
        if self.policy.peer_rate_window <= dt.timedelta(0):
            raise SettingsError("the per-address rate window must be positive")
        if len(self.secret_key) < 32:
            raise SettingsError("the secret key must be at least 32 bytes")
        if len(self.receipt_signing_key) != 32:
            raise SettingsError("the receipt signing key must be a 32-byte Ed25519 seed")
        if len(self.master_key) != 32:
            raise SettingsError("the master key must be 32 bytes (64 hex digits)")
        if self.key_store_url == self.database_url:
            raise SettingsError("the key store must be a database apart from the content")
        if self.inline_calls and not self.database_url.startswith("sqlite"):
            raise SettingsError(
                "inline calls are for the embedded SQLite database only: on PostgreSQL each"
                " statement is a network round trip, which would stall every other call"
            )
        if self.call_workers is not None and not 1 <= self.call_workers <= 512:
            raise SettingsError("call workers must be between 1 and 512")
        if not 1 <= self.serve_workers <= MAX_SERVE_WORKERS:
            raise SettingsError(f"serve workers must be between 1 and {MAX_SERVE_WORKERS}")
        if self.serve_workers > 1 and self.address.rpartition(":")[2] == "0":
            raise SettingsError("several serve workers need a fixed port to share, not port 0")
        for name in (
            "max_concurrent_calls",
            "calls_per_principal",
            "calls_per_service",
            "max_watches",
            "watches_per_address",
            "streams_per_connection",
            "upload_max_chunks",
            "upload_min_chunk_bytes",
            "uploads_per_organisation",
        ):
            if int(getattr(self, name)) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if self.stream_idle_seconds <= 0 or self.keepalive_seconds <= 0:
            raise SettingsError("the stream idle time and the keepalive time must be positive")
        if not 1 <= self.plugin_concurrency <= 64:
            raise SettingsError("plugin concurrency must be between 1 and 64")
        if not 0 <= self.plugin_memory_mb <= 1 << 20:
            raise SettingsError("plugin memory must be between 0 (no limit) and 1048576 MiB")
        if self.password_hash_workers < 1 or self.sign_in_hash_workers < 1:
            raise SettingsError("password hashing needs at least one worker")
        if not 1 <= self.sign_in_call_workers <= 512:
            raise SettingsError("sign-in call workers must be between 1 and 512")
        _validate_sign_in_rules(self.policy)
        if self.password_hash_profile not in PASSWORD_HASH_PROFILES:
            raise SettingsError(f"unknown password hash profile {self.password_hash_profile!r}")
        self._validate_limits()

    def _validate_limits(self) -> None:
        """The limits a deployment tunes (see the README's settings table)."""
        if not 0 < self.plugin_timeout_seconds <= 60:
            raise SettingsError("the plugin time limit must be more than 0 and at most 60 s")
        if not 1 <= self.plugin_fault_limit <= 100:
            raise SettingsError("the plugin fault limit must be between 1 and 100")
        if not 1 <= self.plugin_workers <= 256:
            raise SettingsError("plugin workers must be between 1 and 256")
        if self.sweep_interval_seconds < 1:
            raise SettingsError("the sweep interval must be at least 1 second")
        if self.grace_period_seconds < 0:
            raise SettingsError("the grace period must not be negative")
        if not 1 <= self.max_concurrent_calls <= 100_000:
            raise SettingsError("max concurrent calls must be between 1 and 100000")
        if self.metrics_refresh_seconds <= 0:
            raise SettingsError("the metrics refresh interval must be positive")
        if self.metrics_address is not None:
            host, colon, port = self.metrics_address.rpartition(":")
            if not colon or not host or not port.isdigit() or int(port) > 65535:
                raise SettingsError("the metrics address must be host:port")
            if self.metrics_address == self.address and int(port) != 0:
                raise SettingsError("metrics need a port of their own, not the gRPC address")


def is_loopback(address: str) -> bool:
    """Whether ``host:port`` (or a unix socket) is reachable from this host only."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # empty (every interface), or a name other hosts may resolve
        return False


def _validate_sign_in_rules(policy: PolicySettings) -> None:
    if policy.sign_in_free_failures < 1 or policy.sign_in_address_free_failures < 1:
        raise SettingsError("sign-in must allow at least one failure without a delay")
    first, longest = policy.sign_in_first_delay, policy.sign_in_max_delay
    if not dt.timedelta(milliseconds=1) <= first <= longest <= first * 2**20:
        raise SettingsError(
            "sign-in delays: the first must be positive, the longest at least the first and"
            " reached within 20 doublings"
        )
    if min(policy.sign_in_forget_one_every, policy.sign_in_address_forget_one_every) < (
        dt.timedelta(milliseconds=1)
    ):
        raise SettingsError("sign-in failures must be forgotten at a positive interval")


def _load_key(
    env: Mapping[str, str], variable: str, file_variable: str, default_file: str
) -> bytes:
    """A hex key from ``variable``, else from a key file created on first use (mode 0600).

    Replicas must share the keys: set the variables (or share the files) for them all.
    """
    if hex_key := env.get(variable):
        try:
            return bytes.fromhex(hex_key)
        except ValueError as exc:
            raise SettingsError(f"{variable} must be hex") from exc
    path = Path(env.get(file_variable, default_file))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


_KEY_FILES = (
    ("CHATPRO_SECRET_KEY", "CHATPRO_SECRET_KEY_FILE", DEFAULT_SECRET_KEY_FILE),
    ("CHATPRO_RECEIPT_SIGNING_KEY", "CHATPRO_RECEIPT_SIGNING_KEY_FILE", DEFAULT_RECEIPT_KEY_FILE),
    ("CHATPRO_MASTER_KEY", "CHATPRO_MASTER_KEY_FILE", DEFAULT_MASTER_KEY_FILE),
)


def _switch(source: Mapping[str, str], name: str) -> bool | None:
    """An on/off variable: None when unset or empty (the default applies)."""
    value = source.get(name, "").strip().lower()
    if not value:
        return None
    if value in {"1", "on", "true", "yes"}:
        return True
    if value in {"0", "off", "false", "no"}:
        return False
    raise SettingsError(f"{name} must be on or off, not {value!r}")


def key_files(env: Mapping[str, str] | None = None) -> list[str]:
    """The key files in use: those of keys not given as variables."""
    source = os.environ if env is None else env
    return [
        source.get(file_var, default)
        for var, file_var, default in _KEY_FILES
        if not source.get(var)
    ]


# Settings read from the environment as numbers: variable -> (setting, type).
_NUMBERS: dict[str, tuple[str, type[int] | type[float]]] = {
    "CHATPRO_PLUGIN_TIMEOUT_SECONDS": ("plugin_timeout_seconds", float),
    "CHATPRO_PLUGIN_FAULT_LIMIT": ("plugin_fault_limit", int),
    "CHATPRO_PLUGIN_WORKERS": ("plugin_workers", int),
    "CHATPRO_PLUGIN_CONCURRENCY": ("plugin_concurrency", int),
    "CHATPRO_PLUGIN_MEMORY_MB": ("plugin_memory_mb", int),
    "CHATPRO_SWEEP_INTERVAL_SECONDS": ("sweep_interval_seconds", float),
    "CHATPRO_GRACE_PERIOD_SECONDS": ("grace_period_seconds", float),
    "CHATPRO_PASSWORD_HASH_WORKERS": ("password_hash_workers", int),
    "CHATPRO_SIGN_IN_HASH_WORKERS": ("sign_in_hash_workers", int),
    "CHATPRO_MAX_CONCURRENT_CALLS": ("max_concurrent_calls", int),
    "CHATPRO_METRICS_REFRESH_SECONDS": ("metrics_refresh_seconds", float),
    # Capacity that no one client can take (issue 15).
    "CHATPRO_CALLS_PER_PRINCIPAL": ("calls_per_principal", int),
    "CHATPRO_CALLS_PER_SERVICE": ("calls_per_service", int),
    "CHATPRO_MAX_WATCHES": ("max_watches", int),
    "CHATPRO_WATCHES_PER_ADDRESS": ("watches_per_address", int),
    "CHATPRO_STREAMS_PER_CONNECTION": ("streams_per_connection", int),
    "CHATPRO_STREAM_IDLE_SECONDS": ("stream_idle_seconds", float),
    "CHATPRO_KEEPALIVE_SECONDS": ("keepalive_seconds", float),
    "CHATPRO_MAX_CONNECTION_IDLE_SECONDS": ("max_connection_idle_seconds", float),
    "CHATPRO_MAX_CONNECTION_AGE_SECONDS": ("max_connection_age_seconds", float),
    "CHATPRO_MAX_CONNECTION_AGE_GRACE_SECONDS": ("max_connection_age_grace_seconds", float),
    "CHATPRO_UPLOADS_PER_ORGANISATION": ("uploads_per_organisation", int),
}


def _numbers(source: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for variable, (name, kind) in _NUMBERS.items():
        if variable in source:
            try:
                values[name] = kind(source[variable])
            except ValueError as exc:
                raise SettingsError(f"{variable} must be a number") from exc
    return values


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    source = os.environ if env is None else env
    policy = PolicySettings()
    if "CHATPRO_AGE_OF_DIGITAL_CONSENT" in source:
        policy = replace(
            policy, age_of_digital_consent=int(source["CHATPRO_AGE_OF_DIGITAL_CONSENT"])
        )
    if "CHATPRO_REGISTER_PER_PEER" in source:
        policy = replace(policy, register_per_peer=int(source["CHATPRO_REGISTER_PER_PEER"]))
    if "CHATPRO_SIGN_IN_PER_PEER" in source:
        policy = replace(policy, sign_in_per_peer=int(source["CHATPRO_SIGN_IN_PER_PEER"]))
    if "CHATPRO_RIGHTS_REMINDER_DAYS" in source:
        days = int(source["CHATPRO_RIGHTS_REMINDER_DAYS"])
        policy = replace(policy, rights_reminder_interval=dt.timedelta(days=days))
    if "CHATPRO_RIGHTS_DUE_WARNING_DAYS" in source:
        policy = replace(
            policy, rights_due_warning_days=int(source["CHATPRO_RIGHTS_DUE_WARNING_DAYS"])
        )
    if "CHATPRO_SIGN_IN_FIRST_DELAY_SECONDS" in source:
        first = float(source["CHATPRO_SIGN_IN_FIRST_DELAY_SECONDS"])
        policy = replace(policy, sign_in_first_delay=dt.timedelta(seconds=first))
    if "CHATPRO_SIGN_IN_MAX_DELAY_SECONDS" in source:
        longest = float(source["CHATPRO_SIGN_IN_MAX_DELAY_SECONDS"])
        policy = replace(policy, sign_in_max_delay=dt.timedelta(seconds=longest))
    if "CHATPRO_TOKEN_LIFETIME_SECONDS" in source:
        policy = replace(
            policy,
            session_lifetime=dt.timedelta(seconds=int(source["CHATPRO_TOKEN_LIFETIME_SECONDS"])),
        )
    if "CHATPRO_PEER_RATE_WINDOW_SECONDS" in source:
        window = dt.timedelta(seconds=int(source["CHATPRO_PEER_RATE_WINDOW_SECONDS"]))
        policy = replace(policy, peer_rate_window=window)
    settings = Settings(
        address=source.get("CHATPRO_ADDRESS", Settings.address),
        database_url=source.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        log_format=source.get("CHATPRO_LOG_FORMAT", "auto"),
        log_level=source.get("CHATPRO_LOG_LEVEL", "info"),
        tls_cert_file=source.get("CHATPRO_TLS_CERT") or None,
        tls_key_file=source.get("CHATPRO_TLS_KEY") or None,
        tls_client_ca_file=source.get("CHATPRO_TLS_CLIENT_CA") or None,
        # Signs single-use confirmation tokens, so that no table ever holds one.
        secret_key=_load_key(
            source, "CHATPRO_SECRET_KEY", "CHATPRO_SECRET_KEY_FILE", DEFAULT_SECRET_KEY_FILE
        ),
        receipt_signing_key=_load_key(
            source,
            "CHATPRO_RECEIPT_SIGNING_KEY",
            "CHATPRO_RECEIPT_SIGNING_KEY_FILE",
            DEFAULT_RECEIPT_KEY_FILE,
        ),
        master_key=_load_key(
            source, "CHATPRO_MASTER_KEY", "CHATPRO_MASTER_KEY_FILE", DEFAULT_MASTER_KEY_FILE
        ),
        key_store_url=source.get("CHATPRO_KEY_STORE_URL", DEFAULT_KEY_STORE_URL),
        blob_dir=source.get("CHATPRO_BLOB_DIR", DEFAULT_BLOB_DIR),
        audit_checkpoint_file=source.get(
            "CHATPRO_AUDIT_CHECKPOINT_FILE", DEFAULT_AUDIT_CHECKPOINT_FILE
        ),
        sqlite_synchronous=source.get("CHATPRO_SQLITE_SYNCHRONOUS", "FULL"),
        call_workers=int(source["CHATPRO_CALL_WORKERS"])
        if "CHATPRO_CALL_WORKERS" in source
        else None,
        serve_workers=int(source.get("CHATPRO_SERVE_WORKERS", "1")),
        inline_calls=_switch(source, "CHATPRO_INLINE_CALLS"),
        prepared_statements=_switch(source, "CHATPRO_PREPARED_STATEMENTS") is not False,
        plugin_user=source.get("CHATPRO_PLUGIN_USER", "nobody"),
        metrics_address=source.get("CHATPRO_METRICS_ADDRESS") or None,
        policy=policy,
        **_numbers(source),
    )
    settings.validate()
    return settings
