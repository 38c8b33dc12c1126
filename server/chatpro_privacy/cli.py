"""`chatpro-privacy`: serve, migrate, sweep, the grant or revoke of roles and services, key
destruction, and re-applying erasures after a restore."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chatpro_privacy import logs, replicas
from chatpro_privacy import settings as settings_mod
from chatpro_privacy.app import AddressInUseError, Runtime, prepare_database, serve, sweeps_of
from chatpro_privacy.domain.accounts import roles
from chatpro_privacy.domain.content import key_destruction
from chatpro_privacy.domain.kernel.errors import DomainError
from chatpro_privacy.domain.kernel.principals import SYSTEM, Role
from chatpro_privacy.domain.records import audit
from chatpro_privacy.domain.rights import erasure
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.settings import Settings, SettingsError
from chatpro_privacy.storage.blobs import BlobStore
from chatpro_privacy.storage.erasure_ledger import ErasureLedger
from chatpro_privacy.storage.keystore import KeyStore

_SCOPES = "outbox: read the outbox; forwarded_for: state end users' addresses (repeatable)"


def _serve_parser(sub: Any) -> None:
    """`serve` and its flags."""
    serve_p = sub.add_parser("serve", help="serve gRPC (migrates first)")
    serve_p.add_argument("--address", help="host:port (default 127.0.0.1:50051)")
    serve_p.add_argument("--tls-cert", dest="tls_cert_file")
    serve_p.add_argument("--tls-key", dest="tls_key_file")
    serve_p.add_argument(
        "--tls-client-ca",
        dest="tls_client_ca_file",
        help="CA for service client certificates (mTLS)",
    )
    serve_p.add_argument(
        "--token-lifetime", type=int, metavar="SECONDS", help="session token lifetime"
    )
    serve_p.add_argument("--age-of-digital-consent", type=int)
    serve_p.add_argument(
        "--grace-period", type=float, dest="grace_period_seconds", metavar="SECONDS"
    )
    serve_p.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics there (default: off, or $CHATPRO_METRICS_ADDRESS)",
    )
    serve_p.add_argument(
        "--workers",
        type=int,
        dest="serve_workers",
        metavar="N",
        help="server processes sharing the address (default 1, or $CHATPRO_SERVE_WORKERS)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatpro-privacy", description=__doc__)
    parser.add_argument("--database-url", help="default: $DATABASE_URL or a SQLite file in ./data")
    parser.add_argument("--log-format", choices=["json", "console", "auto"])
    parser.add_argument("--log-level")
    sub = parser.add_subparsers(dest="command", required=True)

    _serve_parser(sub)
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser(
        "verify-audit", help="check the audit trail's chains; exit 1 at the first tampered entry"
    )
    sub.add_parser(
        "sweep",
        help="apply every retention rule once: ChatPro's own schedule, unused accounts, "
        "organisations' content",
    )

    grant = sub.add_parser("grant-role", help="grant a platform role to an account")
    grant.add_argument("login", help="username or email")
    grant.add_argument("role", choices=[role.value for role in Role])
    grant.add_argument("--by", default="cli", help="who grants it, for the record")

    revoke = sub.add_parser("revoke-role", help="take a platform role away")
    revoke.add_argument("login")
    revoke.add_argument("role", choices=[role.value for role in Role])

    service = sub.add_parser(
        "add-service", help="register an internal service; prints its token once"
    )
    service.add_argument("name")
    service.add_argument(
        "--certificate-subject", help="authenticate by client certificate CN instead of a token"
    )
    service.add_argument("--scope", action="append", default=[], choices=roles.SCOPES, help=_SCOPES)

    revoke_s = sub.add_parser("revoke-service", help="revoke an internal service's credential")
    revoke_s.add_argument("name")

    destroy = sub.add_parser(
        "destroy-keys",
        help="destroy an organisation's content keys (or one member's): the content is "
        "unreadable for good",
    )
    destroy.add_argument("organisation_id")
    destroy.add_argument("--member", metavar="ACCOUNT_ID", help="only this member's key")

    sub.add_parser(
        "reapply-erasures",
        help="after restoring the content database from a backup, erase again everyone the "
        "erasure ledger says was erased",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    base = settings_mod.from_env()
    overrides = {
        "database_url": args.database_url,
        "log_format": args.log_format,
        "log_level": args.log_level,
    }
    if args.command == "serve":
        overrides.update(
            address=args.address,
            tls_cert_file=args.tls_cert_file,
            tls_key_file=args.tls_key_file,
            tls_client_ca_file=args.tls_client_ca_file,
            age_of_digital_consent=args.age_of_digital_consent,
            grace_period_seconds=args.grace_period_seconds,
            serve_workers=args.serve_workers,
            metrics_address=args.metrics_address,
            session_lifetime=dt.timedelta(seconds=args.token_lifetime)
            if args.token_lifetime
            else None,
        )
    return base.with_overrides(**overrides)


def _reapply_erasures(settings: Settings) -> int:
    """The ledger and keys live apart from the content database, so they outlive its restore."""
    keys = KeyStore(settings.key_store_url, settings.master_key)
    ledger = ErasureLedger(settings.key_store_url)
    try:
        return erasure.reapply(Vault(keys, BlobStore(settings.blob_dir)), ledger)
    finally:
        ledger.close()
        keys.close()


async def _sweep(settings: Settings) -> dict[str, object]:
    runtime = Runtime.build(settings)
    try:
        return await sweeps_of(runtime).run_after_others()
    finally:
        runtime.passwords.shutdown()
        runtime.sessions.passwords.shutdown()
        runtime.plugins.shutdown()
        runtime.vault.keys.close()
        runtime.ledger.close()


def _private(directory: str) -> None:
    """The default data directory made 0700 if it already exists and is ours (created before
    the umask above): never a directory someone else owns."""
    path = Path(directory)
    try:
        if path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.geteuid():
            path.chmod(0o700)
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Whatever the server creates (databases, keys, blobs, their directories) is its user's
    # alone: files 0600, directories 0700, so that plugin workers (dropped to another user
    # when the server runs as root) can read none of it.
    os.umask(0o077)
    _private(settings_mod.DEFAULT_DATA_DIR)
    try:
        settings = _settings(args)
    except (SettingsError, ValueError) as exc:
        print(f"chatpro-privacy: {exc}", file=sys.stderr)
        return 2
    serving = args.command == "serve"
    logs.configure(
        settings.log_format,
        settings.log_level,
        None if serving else sys.stderr,
        pid=serving and settings.serve_workers > 1,
    )
    try:
        if serving and settings.serve_workers > 1:
            return replicas.serve_replicas(settings)
        if serving:
            asyncio.run(serve(settings))
            return 0
        applied = prepare_database(settings)
        audit.configure(settings.secret_key)
        if args.command == "verify-audit":
            result = audit.verify()
            print(
                json.dumps(
                    {
                        "intact": result.ok,
                        "entries_checked": result.entries_checked,
                        "legacy_entries": result.legacy_entries,
                        "problems": [p.__dict__ for p in result.problems],
                    }
                )
            )
            return 0 if result.ok else 1
        if args.command == "migrate":
            print(json.dumps({"applied": applied}))
        elif args.command == "sweep":
            print(json.dumps(asyncio.run(_sweep(settings)), default=str))
        elif args.command == "grant-role":
            granted = roles.grant_role(args.login, args.role, args.by)
            print(f"{args.role} {'granted to' if granted else 'already held by'} {args.login}")
        elif args.command == "revoke-role":
            removed = roles.revoke_role(args.login, args.role)
            print(f"{args.role} {'revoked from' if removed else 'was not held by'} {args.login}")
        elif args.command == "add-service":
            token = roles.add_service(args.name, args.certificate_subject, tuple(args.scope))
            if token:
                print(token)
            else:
                print(
                    f"{args.name} authenticates with certificate subject {args.certificate_subject}"
                )
        elif args.command == "revoke-service":
            print("revoked" if roles.revoke_service(args.name) else "no active credential")
        elif args.command == "destroy-keys":
            keys = KeyStore(settings.key_store_url, settings.master_key)
            try:
                done = key_destruction.destroy(SYSTEM, keys, args.organisation_id, args.member)
            finally:
                keys.close()
            print(json.dumps(done.__dict__))
        elif args.command == "reapply-erasures":
            print(json.dumps({"reapplied": _reapply_erasures(settings)}))
    except AddressInUseError as exc:
        print(f"chatpro-privacy: {exc}", file=sys.stderr)
        return 1
    except DomainError as exc:
        print(f"chatpro-privacy: {exc.reason}: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
