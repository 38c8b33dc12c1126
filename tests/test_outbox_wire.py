"""The outbox's wire format: one generic conversion serves every event type, and its bytes
are those the per-type conversions it replaced wrote (issue 13)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from chatpro.privacy.v1 import outbox_pb2
from chatpro_privacy.domain.records import outbox
from chatpro_privacy.services.convert.outbox import outbox_event

T = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
SAMPLES: dict[str, dict[str, Any]] = {
    outbox.GUARDIAN_CONSENT_REQUESTED: dict(
        account_id="a1", guardian_email="g@x", child_name="Kid", token="tok", expire_time=T
    ),
    outbox.EMAIL_CONFIRMATION_REQUESTED: dict(
        account_id="a1", email="e@x", token="tok", expire_time=T
    ),
    outbox.PASSWORD_CHANGED: dict(account_id="a1", email="e@x"),
    outbox.POLICY_VERSION_PUBLISHED: dict(
        account_id="a1",
        email="e@x",
        version="v2",
        change_summary="sum",
        effective_time=T,
        requires_reacceptance=True,
    ),
    outbox.GUARDIAN_ACCESS_REQUESTED: dict(
        account_id="a1", guardian_email="g@x", child_name="Kid", token="tok", expire_time=T
    ),
    outbox.PLUGIN_FAULTED: dict(
        organisation_id="o1", plugin_name="pl", reason="boom", emails=["p@o"]
    ),
    outbox.BREACH_NOTIFIED: dict(
        account_id="a1", email="e@x", breach_id="b1", summary="s", data_categories=["c1", "c2"]
    ),
    outbox.BREACH_REPORTED_TO_ORGANISATION: dict(
        organisation_id="o1", email="p@o", breach_id="b1", summary="s"
    ),
    outbox.MEMBERSHIP_INVITED: dict(
        account_id="a1", email="e@x", organisation_id="o1", organisation_name="Org", role="member"
    ),
    outbox.ACCOUNT_SETUP_REQUESTED: dict(
        account_id="a1",
        email="e@x",
        name="N",
        organisation_id="o1",
        organisation_name="Org",
        token="tok",
        expire_time=T,
    ),
    outbox.STATEMENT_ACKNOWLEDGEMENT_REQUESTED: dict(
        account_id="a1",
        email="e@x",
        organisation_id="o1",
        organisation_name="Org",
        statement_version="s2",
        effective_time=T,
    ),
    outbox.CONTENT_FLAGGED: dict(
        organisation_id="o1",
        content_id="c1",
        conversation_id="cv",
        plugin_name="pl",
        category="cat",
        administrator_account_ids=["x", "y"],
    ),
    outbox.RIGHTS_REQUEST_UPDATED: dict(
        account_id="a1",
        email="e@x",
        rights_request_id="r1",
        type="access",
        state="refused",
        due_date="2024-06-01",
        note="n",
        outcome="o",
        complaint_notice="ico",
    ),
    outbox.ACCOUNT_EXPIRY_WARNING: dict(account_id="a1", email="e@x", expire_time=T),
    outbox.RESTRICTION_LIFTING: dict(
        account_id="a1",
        email="e@x",
        rights_request_id="r1",
        restriction_case="accuracy_contested",
        reason="verified",
    ),
}

# Written by the per-type conversions before the registry replaced them.
WIRE = {
    outbox.GUARDIAN_CONSENT_REQUESTED: (
        "0801120261311a0b08d983e2b106108094ef3a52200a02613112036740781a034b69642203746f6b"
        "2a0b08d983e2b106108094ef3a"
    ),
    outbox.EMAIL_CONFIRMATION_REQUESTED: (
        "0802120261311a0b08d983e2b106108094ef3a5a1b0a02613112036540781a03746f6b220b08d983"
        "e2b106108094ef3a"
    ),
    outbox.PASSWORD_CHANGED: ("0803120261311a0b08d983e2b106108094ef3a62090a0261311203654078"),
    outbox.POLICY_VERSION_PUBLISHED: (
        "0804120261311a0b08d983e2b106108094ef3a6a210a02613112036540781a027632220373756d2a"
        "0b08d983e2b106108094ef3a3001"
    ),
    outbox.GUARDIAN_ACCESS_REQUESTED: (
        "0805120261311a0b08d983e2b106108094ef3a72200a02613112036740781a034b69642203746f6b"
        "2a0b08d983e2b106108094ef3a"
    ),
    outbox.PLUGIN_FAULTED: (
        "0806120261311a0b08d983e2b106108094ef3a7a130a026f311202706c1a04626f6f6d220370406f"
    ),
    outbox.BREACH_NOTIFIED: (
        "0807120261311a0b08d983e2b106108094ef3a8201180a02613112036540781a0262312201732a02"
        "63312a026332"
    ),
    outbox.BREACH_REPORTED_TO_ORGANISATION: (
        "0808120261311a0b08d983e2b106108094ef3a8a01100a026f31120370406f1a026231220173"
    ),
    outbox.MEMBERSHIP_INVITED: (
        "0809120261311a0b08d983e2b106108094ef3a92011a0a02613112036540781a026f3122034f7267"
        "2a066d656d626572"
    ),
    outbox.ACCOUNT_SETUP_REQUESTED: (
        "080a120261311a0b08d983e2b106108094ef3a9a01270a02613112036540781a014e22026f312a03"
        "4f72673203746f6b3a0b08d983e2b106108094ef3a"
    ),
    outbox.STATEMENT_ACKNOWLEDGEMENT_REQUESTED: (
        "080b120261311a0b08d983e2b106108094ef3aa201230a02613112036540781a026f3122034f7267"
        "2a027332320b08d983e2b106108094ef3a"
    ),
    outbox.CONTENT_FLAGGED: (
        "080c120261311a0b08d983e2b106108094ef3aaa011b0a026f31120263311a0263762202706c2a03"
        "636174320178320179"
    ),
    outbox.RIGHTS_REQUEST_UPDATED: (
        "080d120261311a0b08d983e2b106108094ef3ab201350a02613112036540781a0272312206616363"
        "6573732a0772656675736564320a323032342d30362d30313a016e42016f4a0369636f"
    ),
    outbox.ACCOUNT_EXPIRY_WARNING: (
        "080e120261311a0b08d983e2b106108094ef3aba01160a02613112036540781a0b08d983e2b106108094ef3a"
    ),
    # Added after the registry (issue 17): field 40 of the oneof, its five strings in order.
    outbox.RESTRICTION_LIFTING: (
        "080f120261311a0b08d983e2b106108094ef3ac2022b0a02613112036540781a027231221261636375"
        "726163795f636f6e7465737465642a087665726966696564"
    ),
}
SUPERSEDED = "08631a0b08d983e2b106108094ef3a2001"


def test_every_event_type_converts_to_the_same_bytes_as_before() -> None:
    assert set(SAMPLES) == set(outbox.EVENT_TYPES) == set(WIRE)
    for sequence, (name, values) in enumerate(SAMPLES.items(), start=1):
        payload = outbox.EVENT_TYPES[name].payload(**values)
        event = outbox.DeliverableEvent(sequence, name, "a1", T, payload)
        wire = outbox_event(event).SerializeToString(deterministic=True)
        assert wire.hex() == WIRE[name], name


def test_a_superseded_event_carries_no_payload() -> None:
    event = outbox.DeliverableEvent(99, outbox.PASSWORD_CHANGED, None, T, None)
    assert outbox_event(event).SerializeToString(deterministic=True).hex() == SUPERSEDED


def test_every_payload_names_the_fields_of_its_proto_message() -> None:
    """A new event type needs no conversion of its own, only matching names."""
    oneof = outbox_pb2.OutboxEvent.DESCRIPTOR.oneofs_by_name["payload"]
    messages = {f.name: f.message_type for f in oneof.fields}
    for name, kind in outbox.EVENT_TYPES.items():
        fields = {f.name for f in dataclasses.fields(kind.payload)}  # type: ignore[arg-type]
        message = messages[name]
        assert message is not None, name
        assert fields == set(message.fields_by_name), name
        assert kind.payload.__name__ == message.name, name
