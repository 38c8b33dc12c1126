"""The server runtime: health, reflection, one address per server, SIGTERM drain, TLS and
mTLS service credentials, and the chatpro-privacy command (SEC-3)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import (
    account_service_pb2_grpc,
    outbox_service_pb2,
    outbox_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
)
from chatpro_privacy.domain.accounts import roles
from chatpro_privacy.storage import migrations
from chatpro_privacy.testing import InProcessServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from helpers import Api, content_key_env, free_port, registration, wait_until_serving

CLI = [sys.executable, "-m", "chatpro_privacy"]


def test_health_and_reflection(api: Api) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", "chatpro.privacy.v1.AccountService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    names = set(ProtoReflectionDescriptorDatabase(api.channel).get_services())
    assert {
        "chatpro.privacy.v1.AccountService",
        "chatpro.privacy.v1.PolicyService",
        "chatpro.privacy.v1.OutboxService",
        "grpc.health.v1.Health",
    } <= names


def test_policy_and_controller_are_served_without_sign_in_con6(api: Api) -> None:
    """CON-6: the controller's identity and contacts (data privacy manager, postal address,
    email, phone, ICO reference ZA773784) are served by the API, to anyone."""
    import hashlib

    policy = api.policy.GetCurrentPolicy(policy_service_pb2.GetCurrentPolicyRequest()).policy
    seed = (
        Path(__file__).parents[1]
        / "server/chatpro_privacy/storage/migrations/data/privacy-policy-2023-02-12.txt"
    ).read_text("utf-8")
    assert policy.version == "2023-02-12" and policy.text == seed
    assert policy.text_sha256 == hashlib.sha256(seed.encode()).hexdigest()
    assert policy.effective_time.ToDatetime() == dt.datetime(2023, 2, 12)
    controller = api.policy.GetControllerInfo(
        policy_service_pb2.GetControllerInfoRequest()
    ).controller
    assert (controller.name, controller.ico_reference, controller.data_privacy_manager) == (
        "ChatPro Limited",
        "ZA773784",
        "Mr H Serle",
    )
    assert controller.email == "privacy@chatpro.co.uk" and "BS9 4PN" in controller.postal_address
    assert controller.telephone == "0330 133 5278"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, dict[str, str], Path]]:
    """`chatpro-privacy serve` as a real process on SQLite."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/served.sqlite3",
        "CHATPRO_SECRET_KEY": secrets.token_hex(32),
        "CHATPRO_RECEIPT_SIGNING_KEY": secrets.token_hex(32),
        **content_key_env(tmp_path),
        "CHATPRO_LOG_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", "--address", f"127.0.0.1:{port}"], env=env, stdout=out, stderr=out
        )
    try:
        wait_until_serving(f"127.0.0.1:{port}", timeout=20)
        yield proc, port, env, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_taken_port_is_an_error_not_shared(
    served: tuple[subprocess.Popen[bytes], int, dict[str, str], Path],
) -> None:
    _, port, env, _ = served
    second = subprocess.run(
        [*CLI, "serve", "--address", f"127.0.0.1:{port}"], env=env, capture_output=True, timeout=30
    )
    assert second.returncode == 1
    assert b"cannot bind" in second.stderr


def test_sigterm_drains_in_flight_calls(
    served: tuple[subprocess.Popen[bytes], int, dict[str, str], Path],
) -> None:
    proc, port, _, log = served
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = account_service_pb2_grpc.AccountServiceStub(channel)
    calls = [stub.Register.future(registration(username=f"drain{i}"), timeout=30) for i in range(4)]
    time.sleep(0.05)  # each Register hashes a password for ~100 ms: they are in flight
    proc.send_signal(signal.SIGTERM)
    results = [c.result().account.username for c in calls]
    assert results == [f"drain{i}" for i in range(4)]
    assert proc.wait(timeout=30) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.index("draining") < events.index("stopped")
    assert (
        sum(
            1
            for line in lines
            if line.get("method", "").endswith("/Register") and line["code"] == "OK"
        )
        == 4
    )
    channel.close()


def test_access_log_has_one_line_per_call(
    served: tuple[subprocess.Popen[bytes], int, dict[str, str], Path],
) -> None:
    _, port, _, log = served
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
    rid = uuid.uuid4().hex
    stub.GetCurrentPolicy(
        policy_service_pb2.GetCurrentPolicyRequest(), metadata=(("x-request-id", rid),)
    )
    channel.close()
    time.sleep(0.2)
    mine = [json.loads(line) for line in log.read_text().splitlines() if rid in line]
    assert len(mine) == 1
    assert mine[0]["method"] == "/chatpro.privacy.v1.PolicyService/GetCurrentPolicy"
    assert mine[0]["code"] == "OK" and mine[0]["duration_ms"] >= 0


# -- TLS -----------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_name: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_tls_and_mtls_service_credentials(
    database_target: tuple[str, str | None], tmp_path: Path
) -> None:
    ca_key = _key()
    ca = _cert("ChatPro test CA", ca_key, "ChatPro test CA", ca_key, ca=True)
    server_key = _key()
    server_cert = _cert("localhost", server_key, "ChatPro test CA", ca_key, server=True)
    client_key = _key()
    client_cert = _cert("notifications", client_key, "ChatPro test CA", ca_key)
    files: dict[str, Path] = {}
    pems: dict[str, x509.Certificate | ec.EllipticCurvePrivateKey] = {
        "ca": ca,
        "server": server_cert,
        "server_key": server_key,
    }
    for name, obj in pems.items():
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(_pem(obj))
    url, schema = database_target
    tls_files: dict[str, Any] = {
        "tls_cert_file": str(files["server"]),
        "tls_key_file": str(files["server_key"]),
    }
    with InProcessServer.start(url, schema=schema, **tls_files) as srv:
        plain = grpc.insecure_channel(srv.target)
        with pytest.raises(grpc.RpcError):
            policy_service_pb2_grpc.PolicyServiceStub(plain).GetCurrentPolicy(
                policy_service_pb2.GetCurrentPolicyRequest(), timeout=3
            )
        plain.close()
        tls = grpc.secure_channel(srv.target, grpc.ssl_channel_credentials(_pem(ca)))
        policy = policy_service_pb2_grpc.PolicyServiceStub(tls).GetCurrentPolicy(
            policy_service_pb2.GetCurrentPolicyRequest()
        )
        assert policy.policy.version == "2023-02-12"
        with pytest.raises(grpc.RpcError) as caught:
            outbox_service_pb2_grpc.OutboxServiceStub(tls).ListOutboxEvents(
                outbox_service_pb2.ListOutboxEventsRequest()
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        tls.close()
    with InProcessServer.start(
        url, schema=schema, tls_client_ca_file=str(files["ca"]), **tls_files
    ) as srv:
        roles.add_service("notifications", certificate_subject="notifications", scopes=("outbox",))
        # With a client CA, a caller without a certificate cannot connect at all.
        no_cert = grpc.secure_channel(srv.target, grpc.ssl_channel_credentials(_pem(ca)))
        with pytest.raises(grpc.RpcError):
            policy_service_pb2_grpc.PolicyServiceStub(no_cert).GetCurrentPolicy(
                policy_service_pb2.GetCurrentPolicyRequest(), timeout=3
            )
        no_cert.close()
        mtls = grpc.secure_channel(
            srv.target, grpc.ssl_channel_credentials(_pem(ca), _pem(client_key), _pem(client_cert))
        )
        api = Api(srv, mtls)
        listed = api.outbox.ListOutboxEvents(outbox_service_pb2.ListOutboxEventsRequest())
        assert listed.acknowledged_sequence == 0
        # A person's session token forwarded by the service makes the call the person's.
        _, token = api.adult()
        with pytest.raises(grpc.RpcError) as denied:
            api.outbox_events(token)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        mtls.close()


# -- the command ----------------------------------------------------------------------------


def test_cli_migrate_grant_role_and_add_service(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/cli.sqlite3",
        "CHATPRO_SECRET_KEY": secrets.token_hex(32),
        "CHATPRO_RECEIPT_SIGNING_KEY": secrets.token_hex(32),
        **content_key_env(tmp_path),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)

    assert json.loads(run("migrate").stdout) == {"applied": [m.name for m in migrations.MIGRATIONS]}
    assert json.loads(run("migrate").stdout) == {"applied": []}
    missing = run("grant-role", "nobody", "operator")
    assert missing.returncode == 2 and "ACCOUNT_NOT_FOUND" in missing.stderr
    bad_role = run("grant-role", "nobody", "superuser")
    assert bad_role.returncode == 2
    token = run("add-service", "notifications").stdout.strip()
    assert token.startswith("cpsvc1_")
    assert run("add-service", "notifications").returncode == 2
    assert run("revoke-service", "notifications").stdout.strip() == "revoked"
    swept = run("sweep")
    assert swept.returncode == 0, swept.stderr
    report = json.loads(swept.stdout)
    assert report["unconfirmed_children_deleted"] == 0
    assert report["own_data_deleted"] == {
        "sessions": 0,
        "devices": 0,
        "correspondence": 0,
        "provisioned_accounts": 0,
        "deletion_feed": 0,
        "outbox_events": 0,
    }
    assert report["content"]["deleted"] == 0 and report["accounts_expired"] == 0
    bad_url = subprocess.run(
        [*CLI, "migrate"],
        env={**env, "DATABASE_URL": "mysql://x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_url.returncode != 0 and "unsupported DATABASE_URL" in bad_url.stderr


def test_grant_role_through_the_command(
    database_target: tuple[str, str | None], tmp_path: Path
) -> None:
    url, schema = database_target
    if schema is not None:
        pytest.skip("the command addresses the database by URL; the schema isolation is the test's")
    with InProcessServer.start(url) as srv:
        channel = grpc.insecure_channel(srv.target)
        Api(srv, channel).register(username="operator1")
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "CHATPRO_SECRET_KEY": secrets.token_hex(32),
            "CHATPRO_RECEIPT_SIGNING_KEY": secrets.token_hex(32),
            **content_key_env(tmp_path),
        }
        out = subprocess.run(
            [*CLI, "grant-role", "operator1", "operator"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == "operator granted to operator1"
        again = subprocess.run(
            [*CLI, "grant-role", "OPERATOR1", "operator"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.stdout.strip() == "operator already held by OPERATOR1"
        channel.close()
