"""The privacy policy versions and the controller's details (CON-1, CON-6)."""

from __future__ import annotations

from chatpro_privacy.domain.clock import clock
from chatpro_privacy.domain.errors import FailedPrecondition
from chatpro_privacy.storage.models import ControllerInfo, PolicyVersion


def current_policy() -> PolicyVersion:
    """The latest version whose effective time has come."""
    version = (
        PolicyVersion.select()
        .where(PolicyVersion.effective_at <= clock.now())
        .order_by(PolicyVersion.effective_at.desc(), PolicyVersion.id.desc())
        .first()
    )
    if version is None:
        raise FailedPrecondition("NO_POLICY_PUBLISHED", "no privacy policy is in effect")
    return version


def controller_info() -> ControllerInfo:
    info = ControllerInfo.get_or_none(ControllerInfo.id == 1)
    if info is None:
        raise FailedPrecondition("CONTROLLER_UNKNOWN", "the controller's details are missing")
    return info
