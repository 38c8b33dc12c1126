"""Policy versions and the controller's details -> policy.proto."""

from __future__ import annotations

from chatpro.privacy.v1 import policy_pb2

from chatpro_privacy.domain.consent import policy
from chatpro_privacy.services.convert.common import timestamp


def policy_version(row: policy.PolicyVersionView) -> policy_pb2.PolicyVersion:
    return policy_pb2.PolicyVersion(
        version=row.version,
        effective_time=timestamp(row.effective_at),
        change_summary=row.change_summary,
        text=row.text,
        text_sha256=row.text_sha256,
        requires_reacceptance=row.requires_reacceptance,
        publish_time=timestamp(row.published_at),
    )


def controller(row: policy.ControllerView) -> policy_pb2.ControllerInfo:
    return policy_pb2.ControllerInfo(
        name=row.name,
        data_privacy_manager=row.data_privacy_manager,
        postal_address=row.postal_address,
        email=row.email,
        telephone=row.telephone,
        ico_reference=row.ico_reference,
        contact_url=row.contact_url,
        supervisory_authority=row.supervisory_authority,
    )
