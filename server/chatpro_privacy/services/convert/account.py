"""Accounts and devices <-> account.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import account_pb2

from chatpro_privacy.domain.accounts import devices, profile
from chatpro_privacy.domain.accounts.correspondence import CorrespondenceKind
from chatpro_privacy.domain.kernel.principals import Role
from chatpro_privacy.domain.kernel.vocabulary import AccountState
from chatpro_privacy.services.convert.common import calendar_date, source, timestamp

# Keyed by the stored text, which each member equals.
STATES: dict[str, account_pb2.AccountState.ValueType] = {
    AccountState.ACTIVE: account_pb2.ACCOUNT_STATE_ACTIVE,
    AccountState.PENDING_GUARDIAN_CONSENT: account_pb2.ACCOUNT_STATE_PENDING_GUARDIAN_CONSENT,
    AccountState.PENDING_SETUP: account_pb2.ACCOUNT_STATE_PENDING_SETUP,
    AccountState.CLOSED: account_pb2.ACCOUNT_STATE_CLOSED,
}
ROLES: dict[str, account_pb2.PlatformRole.ValueType] = {
    Role.OPERATOR: account_pb2.PLATFORM_ROLE_OPERATOR,
    Role.DATA_PRIVACY_MANAGER: account_pb2.PLATFORM_ROLE_DATA_PRIVACY_MANAGER,
}
INSTALLATION_EVENTS = {
    account_pb2.INSTALLATION_EVENT_TYPE_INSTALL: devices.InstallationEventType.INSTALL,
    account_pb2.INSTALLATION_EVENT_TYPE_UNINSTALL: devices.InstallationEventType.UNINSTALL,
    account_pb2.INSTALLATION_EVENT_TYPE_UPDATE_CHECK: devices.InstallationEventType.UPDATE_CHECK,
}
CORRESPONDENCE_KINDS = {
    account_pb2.CORRESPONDENCE_KIND_CONTACT: CorrespondenceKind.CONTACT,
    account_pb2.CORRESPONDENCE_KIND_PROBLEM_REPORT: CorrespondenceKind.PROBLEM_REPORT,
}


def device_data(info: account_pb2.DeviceInfo) -> devices.DeviceData:
    return devices.DeviceData(
        device_type=info.device_type,
        device_id=info.device_id,
        operating_system=info.operating_system,
        browser_type=info.browser_type,
    )


def account(view: profile.AccountView) -> account_pb2.Account:
    a = view.account
    return account_pb2.Account(
        account_id=a.id,
        username=a.username,
        email=a.email,
        name=a.name,
        date_of_birth=calendar_date(a.date_of_birth),
        guardian_email=a.guardian_email or "",
        mobile_number=a.mobile_number or "",
        profile_picture=bytes(a.profile_picture or b""),
        profile_picture_type=a.profile_picture_type or "",
        state=STATES.get(a.state, account_pb2.ACCOUNT_STATE_UNSPECIFIED),
        create_time=timestamp(a.created_at),
        last_active_time=timestamp(a.last_active_at),
        pending_email=a.pending_email or "",
        roles=[ROLES[r] for r in view.roles if r in ROLES],
        sources=[
            account_pb2.DataItemSource(
                field=s.field, source=source(s.source), record_time=timestamp(s.recorded_at)
            )
            for s in view.sources
        ],
    )


def device(row: devices.DeviceView) -> account_pb2.Device:
    return account_pb2.Device(
        info=account_pb2.DeviceInfo(
            device_type=row.device_type,
            device_id=row.device_id,
            operating_system=row.operating_system,
            browser_type=row.browser_type,
        ),
        source=source(row.source),
        first_use_time=timestamp(row.first_used_at),
        last_use_time=timestamp(row.last_used_at),
        use_count=row.use_count,
    )
