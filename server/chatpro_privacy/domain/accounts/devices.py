"""Device and installation records (ACC-7): what the app reports about the device it
runs on, and analytics providers' reports, which rest on the person's consent.

The purposes register splits device data field by field (CON-4): what is strictly necessary
(the device identifier and operating system, for the account's security) is kept on a
legitimate interest, which an upheld objection stops (RGT-4); the rest needs the person's
consent, and without it (or while processing is restricted, RGT-5) it is not stored."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace

from chatpro_privacy.clock import clock
from chatpro_privacy.domain.accounts.profile import load_account
from chatpro_privacy.domain.accounts.sources import DataSource
from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.consent import restrictions
from chatpro_privacy.domain.consent.purposes import DeviceNeed, register
from chatpro_privacy.domain.kernel import access, tokens, validation
from chatpro_privacy.domain.kernel.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from chatpro_privacy.domain.kernel.principals import Principal
from chatpro_privacy.domain.kernel.views import View
from chatpro_privacy.domain.records import audit
from chatpro_privacy.storage import chained, queries
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import Device, InstallationEvent

ANALYTICS = "analytics"  # the purpose of the register that device analytics rests on
DEVICE_SECURITY = "device_security"  # the purpose device records from the app rest on


class InstallationEventType(enum.StrEnum):
    INSTALL = "install"
    UNINSTALL = "uninstall"
    UPDATE_CHECK = "update_check"


@dataclass(frozen=True)
class DeviceData:
    device_type: str
    device_id: str
    operating_system: str
    browser_type: str


@dataclass(frozen=True)
class DeviceView(View):
    """A device as its account's owner sees it: what it reported, from where, how often."""

    device_type: str
    device_id: str
    operating_system: str
    browser_type: str
    source: str
    first_used_at: dt.datetime
    last_used_at: dt.datetime
    use_count: int


def validate_device(v: Violations, device: DeviceData, prefix: str = "device") -> DeviceData:
    device_id = device.device_id.strip()
    if not device_id:
        v.add(f"{prefix}.device_id", "is required", "REQUIRED")
    elif len(device_id) > validation.MAX_DEVICE_ID:
        v.add(
            f"{prefix}.device_id",
            f"must be at most {validation.MAX_DEVICE_ID} characters",
            "TOO_LONG",
        )
    return DeviceData(
        device_type=validation.optional_text(
            v, f"{prefix}.device_type", device.device_type, validation.MAX_DEVICE_FIELD
        ),
        device_id=device_id,
        operating_system=validation.optional_text(
            v, f"{prefix}.operating_system", device.operating_system, validation.MAX_DEVICE_FIELD
        ),
        browser_type=validation.optional_text(
            v, f"{prefix}.browser_type", device.browser_type, validation.MAX_DEVICE_FIELD
        ),
    )


def _device_use(account_id: str, device: DeviceData, source: str) -> chained.Write:
    return queries.device_use(
        account_id,
        device.device_id,
        device.device_type,
        device.operating_system,
        device.browser_type,
        source,
        clock.now(),
    )


def upsert_device(account_id: str, device: DeviceData, source: str) -> Device:
    """In the caller's transaction."""
    rows: list[Device] = chained.run(_device_use(account_id, device, source), Device)
    return rows[0]


# How precisely the last use of an account is kept: expiry is six months after it (RET-2).
ACTIVITY_PRECISION = dt.timedelta(hours=1)


def _not_marked_recently(principal: Principal, account_id: str) -> bool:
    """Whether the account's last use, as authentication saw it, is older than the precision
    it is kept to (a statement saved on most calls); another account's is always marked."""
    seen = principal.last_active_at if account_id == principal.account_id else None
    return seen is None or clock.now() - seen >= ACTIVITY_PRECISION


def _check_source(principal: Principal, source: str) -> str:
    """Who may report device data: a person only from their device, a service also as an
    analytics provider."""
    if principal.is_person and source not in ("", DataSource.DEVICE):
        raise InvalidArgument(
            [
                FieldViolation(
                    "source", "people report device data from their device", "INVALID_SOURCE"
                )
            ]
        )
    if principal.is_service and source not in (
        "",
        DataSource.DEVICE,
        DataSource.ANALYTICS_PROVIDER,
    ):
        raise InvalidArgument(
            [
                FieldViolation(
                    "source", "must be the device or an analytics provider", "INVALID_SOURCE"
                )
            ]
        )
    return source or DataSource.DEVICE


def _require_analytics_allowed(account_id: str, subject_ref: str) -> None:
    """RGT-4, RGT-5: analytics stops for a restriction or an objection; it rests on consent,
    so without it (or after its withdrawal) nothing is kept."""
    restrictions.require_unrestricted(account_id, "analytics")
    if restrictions.objected(account_id, restrictions.ObjectionGround.LEGITIMATE_INTEREST):
        raise FailedPrecondition("PROCESSING_OBJECTED_TO", "the person objected to this processing")
    if not consent.has_consent(subject_ref, ANALYTICS):
        raise FailedPrecondition(
            "CONSENT_REQUIRED",
            "the person has not consented to analytics from device data",
            {"purpose_id": ANALYTICS},
        )


def _consent_purposes(device: DeviceData) -> list[str]:
    """The purposes whose consent the reported fields need (CON-4)."""
    needed = {
        use.purpose_id
        for use in register().device_data
        if use.need == DeviceNeed.CONSENT and getattr(device, use.field)
    }
    return sorted(needed)


def _consented_fields(device: DeviceData, person: restrictions.Standing) -> DeviceData:
    """CON-4: the fields the register says need consent are blanked unless the person gave
    it for their purpose, and while their processing is restricted (RGT-5)."""
    restricted = restrictions.RESTRICTED in person.grounds
    blank = {
        use.field: ""
        for use in register().device_data
        if use.need == DeviceNeed.CONSENT
        and getattr(device, use.field)
        and (restricted or not consent.in_force(person.consents.get(use.purpose_id)))
    }
    return replace(device, **blank)


def _not_recorded(device: DeviceData, source: str) -> DeviceView:
    """What the app is told when its report is not kept (the person objected)."""
    now = clock.now()
    return DeviceView(
        device.device_type,
        device.device_id,
        device.operating_system,
        device.browser_type,
        source,
        now,
        now,
        0,
    )


class DeviceRecords:
    """Part of ``Accounts``."""

    def record_device_use(
        self, principal: Principal, account_id: str, device: DeviceData, source: str
    ) -> DeviceView:
        target = access.target_account(principal, account_id, write=True)
        source = _check_source(principal, source)
        v = Violations()
        device = validate_device(v, device)
        v.raise_if_any()
        subject_ref = (
            principal.subject_ref
            if target == principal.account_id
            else queries.account_subject(target)
        )
        if subject_ref is None:
            raise NotFound("ACCOUNT_NOT_FOUND", "no such account", {"account_id": target})
        touch = source == DataSource.DEVICE and _not_marked_recently(principal, target)
        if source != DataSource.ANALYTICS_PROVIDER:
            person = restrictions.standing(target, subject_ref, _consent_purposes(device))
            device = _consented_fields(device, person)
            if restrictions.stops(register().get(DEVICE_SECURITY), person.grounds):
                if touch:  # RGT-4: the records stop; the use still keeps the account alive
                    with database.atomic():
                        queries.touch_account(target, clock.now())
                return _not_recorded(device, source)
        if source == DataSource.ANALYTICS_PROVIDER or touch:
            with database.atomic():
                if source == DataSource.ANALYTICS_PROVIDER:
                    _require_analytics_allowed(target, subject_ref)
                row = upsert_device(target, device, source)
                if touch:
                    queries.touch_account(target, clock.now())  # the app in use (ACC-7, RET-2)
                audit.record(principal, "device.use", "account", target, subject_ref)
            return DeviceView.from_row(row)
        # The hot path: the device's use and its audit entry in one round trip.
        (row,) = audit.recorded_write(
            principal,
            "device.use",
            "account",
            target,
            subject_ref,
            _device_use(target, device, source),
            Device,
        )
        return DeviceView.from_row(row)

    def list_devices(self, principal: Principal, account_id: str) -> list[DeviceView]:
        target = access.target_account(principal, account_id)
        account = load_account(target)
        if target != principal.account_id:
            with database.atomic():
                audit.record(principal, "device.read", "account", target, account.subject_ref)
        rows = Device.select().where(Device.account == target).order_by(Device.last_used_at.desc())
        return [DeviceView.from_row(r) for r in rows]

    def record_installation(
        self,
        principal: Principal,
        account_id: str,
        application_number: str,
        os_type: str,
        event_type: str,
    ) -> str:
        v = Violations()
        number = validation.required_text(v, "application_number", application_number, 64)
        os_name = validation.required_text(v, "operating_system_type", os_type, 32)
        if event_type not in set(InstallationEventType):
            v.add("event_type", "must be install, uninstall or update check", "REQUIRED")
        v.raise_if_any()
        target = _installation_account(principal, account_id)
        event_id = tokens.new_id()
        with database.atomic():
            subject_ref = None if target is None else load_account(target).subject_ref
            InstallationEvent.create(
                id=event_id,
                account=target,
                application_number=number,
                operating_system_type=os_name,
                event_type=event_type,
                source=DataSource.DEVICE,
                recorded_at=clock.now(),
            )
            if subject_ref is not None:
                audit.record(
                    principal, "installation.record", "installation_event", event_id, subject_ref
                )
        return event_id


def _installation_account(principal: Principal, account_id: str) -> str | None:
    """A person's installations are their own; a service may report one for nobody."""
    if principal.is_person:
        return access.target_account(principal, account_id, write=True)
    if len(account_id) > 64:
        raise InvalidArgument([FieldViolation("account_id", "is too long", "TOO_LONG")])
    return account_id or None
