"""Rights requests (RGT-2 to RGT-8, ACC-11; journey 5): states, due dates, history,
verification, extension, refusal, organisations' answers, and the requester told at each
step."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
from chatpro.privacy.v1 import (
    account_pb2,
    account_service_pb2,
    common_pb2,
    disclosure_service_pb2,
    organisation_pb2,
    outbox_service_pb2,
    rights_pb2,
)
from chatpro.privacy.v1 import messaging_service_pb2 as msg
from chatpro.privacy.v1 import monitoring_service_pb2 as mon
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro.privacy.v1 import retention_service_pb2 as ret
from chatpro.privacy.v1 import retention_service_pb2_grpc as ret_grpc
from chatpro.privacy.v1 import rights_service_pb2 as pb
from chatpro_privacy.clock import clock
from chatpro_privacy.storage.models import (
    Account,
    ConsentEvent,
    KeptCorrespondence,
    ProcessingRestriction,
    RightsRequest,
)
from helpers import (
    Api,
    Unchanged,
    child_birthday,
    create_recipient,
    restriction_row,
    rpc_error,
    set_clock,
)
from helpers import request_right as request
from helpers import verify_requester as verify
from orgs import build_org, conversation, join, scope, send

S = rights_pb2
DATE = common_pb2.CalendarDate


def get(api: Api, token: str, rights_request_id: str) -> S.RightsRequest:
    return api.rights.GetRightsRequest(
        pb.GetRightsRequestRequest(rights_request_id=rights_request_id), metadata=api.auth(token)
    ).rights_request


def notices(api: Api, service: str, rights_request_id: str) -> list[tuple[str, str]]:
    events = api.outbox_events(service).events
    return [
        (e.rights_request_updated.state, e.rights_request_updated.note)
        for e in events
        if e.HasField("rights_request_updated")
        and e.rights_request_updated.rights_request_id == rights_request_id
    ]


@pytest.fixture
def dpm(api: Api) -> str:
    return api.staff("data_privacy_manager", "dpm")


def test_an_access_request_waits_for_the_organisation_and_tells_the_requester(
    api: Api, dpm: str
) -> None:
    """Journey 5: received, verified, awaiting the organisation (no plugin: its
    administrators answer), completed; every step in the history and the outbox."""
    school = build_org(api, "s", members=("pupil",))
    pupil = school.members["pupil"]
    made = request(api, pupil.token, S.RIGHTS_REQUEST_TYPE_ACCESS, details="all my data")
    assert made.details == "all my data"
    assert made.state == S.RIGHTS_REQUEST_STATE_RECEIVED
    assert made.channel == S.RIGHTS_REQUEST_CHANNEL_PERSON
    received = made.receive_time.ToDatetime().date()
    assert (made.due_date.month - received.month) % 12 == 1
    verified = verify(api, dpm, made.rights_request_id)
    assert verified.state == S.RIGHTS_REQUEST_STATE_AWAITING_ORGANISATION
    assert verified.identity_method == "signed-in session and email confirmation"
    (part,) = verified.organisation_parts
    assert (part.organisation_id, part.answered) == (school.organisation_id, False)

    pending = api.rights.ListOrganisationRightsRequests(
        pb.ListOrganisationRightsRequestsRequest(organisation_id=school.organisation_id),
        metadata=api.auth(school.admin.token),
    ).rights_requests
    assert [r.rights_request_id for r in pending] == [made.rights_request_id]
    # The organisation sees its own part, not the person's words, evidence or history (ORG-5).
    (seen,) = pending
    assert (seen.details, seen.identity_evidence, list(seen.history)) == ("", "", [])
    assert [p.organisation_id for p in seen.organisation_parts] == [school.organisation_id]
    failure = rpc_error(
        lambda: api.rights.AnswerRightsRequest(
            pb.AnswerRightsRequestRequest(
                rights_request_id=made.rights_request_id,
                organisation_id=school.organisation_id,
                decision="withheld",
            ),
            metadata=api.auth(school.admin.token),
        )
    )
    assert failure.violations == {"reason": "REQUIRED"}
    done = api.rights.AnswerRightsRequest(
        pb.AnswerRightsRequestRequest(
            rights_request_id=made.rights_request_id,
            organisation_id=school.organisation_id,
            decision="exported",
        ),
        metadata=api.auth(school.admin.token),
    ).rights_request
    assert done.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    done = get(api, pupil.token, made.rights_request_id)
    assert [(e.to_state, e.actor) for e in done.history] == [
        (S.RIGHTS_REQUEST_STATE_RECEIVED, "person"),
        (S.RIGHTS_REQUEST_STATE_IN_PROGRESS, "data_privacy_manager"),
        (S.RIGHTS_REQUEST_STATE_AWAITING_ORGANISATION, "system"),
        (S.RIGHTS_REQUEST_STATE_AWAITING_ORGANISATION, "organisation"),
        (S.RIGHTS_REQUEST_STATE_IN_PROGRESS, "system"),
        (S.RIGHTS_REQUEST_STATE_COMPLETED, "system"),
    ]
    told = notices(api, api.service_token(), made.rights_request_id)
    assert [state for state, _ in told] == ["completed"] * len(told)  # resolved as it is now
    assert len(told) == 5
    # Nobody else sees it; another organisation's admin does not either.
    other = build_org(api, "o", members=(), operator=school.operator)
    for token in (other.admin.token, school.admin.token):
        assert rpc_error(partial(get, api, token, made.rights_request_id)).code == (
            grpc.StatusCode.NOT_FOUND
        )
    assert get(api, dpm, made.rights_request_id).state == S.RIGHTS_REQUEST_STATE_COMPLETED


def test_refusal_needs_a_reason_and_states_the_right_to_complain(
    api: Api,
    dpm: str,
    unchanged: Unchanged,
) -> None:
    _, person = api.adult()
    made = request(api, person, S.RIGHTS_REQUEST_TYPE_OBJECTION,
                   objection_ground=S.OBJECTION_GROUND_LEGITIMATE_INTEREST)  # fmt: skip
    refuse = pb.RefuseRightsRequestRequest(rights_request_id=made.rights_request_id)
    failure = unchanged(lambda: api.rights.RefuseRightsRequest(refuse, metadata=api.auth(dpm)))
    assert failure.violations == {"reason": "REQUIRED"}
    refuse.reason = "the processing is needed to keep accounts secure"
    refused = api.rights.RefuseRightsRequest(refuse, metadata=api.auth(dpm)).rights_request
    assert refused.state == S.RIGHTS_REQUEST_STATE_REFUSED
    assert "Information Commissioner" in refused.complaint_notice
    assert "ico.org.uk" in refused.outcome
    # A person cannot refuse, verify or extend their own request.
    for call in (
        lambda: api.rights.RefuseRightsRequest(refuse, metadata=api.auth(person)),
        lambda: verify(api, person, made.rights_request_id),
    ):
        assert rpc_error(call).reason == "DATA_PRIVACY_MANAGER_ONLY"
    assert rpc_error(lambda: verify(api, dpm, made.rights_request_id)).reason == (
        "RIGHTS_REQUEST_CLOSED"
    )


def test_due_dates_and_extensions_across_month_ends(api: Api, unchanged: Unchanged) -> None:
    set_clock(dt.datetime(2027, 1, 31, 12, 0))
    try:
        _, person = api.adult()
        dpm = api.staff("data_privacy_manager", "dpm")
        made = request(api, person, S.RIGHTS_REQUEST_TYPE_ACCESS)
        assert made.due_date == DATE(year=2027, month=2, day=28)
        extend = pb.ExtendRightsRequestRequest(rights_request_id=made.rights_request_id, months=1)
        assert unchanged(
            lambda: api.rights.ExtendRightsRequest(extend, metadata=api.auth(dpm))
        ).violations == {"reason": "REQUIRED"}
        extend.reason = "the request is complex: several organisations hold your content"
        extended = api.rights.ExtendRightsRequest(extend, metadata=api.auth(dpm)).rights_request
        assert (extended.due_date, extended.extension_months) == (
            DATE(year=2027, month=3, day=31),
            1,
        )
        extend.months = 2
        assert unchanged(
            lambda: api.rights.ExtendRightsRequest(extend, metadata=api.auth(dpm))
        ).violations == {"months": "OUT_OF_RANGE"}
        extend.months = 1
        again = api.rights.ExtendRightsRequest(extend, metadata=api.auth(dpm)).rights_request
        assert again.due_date == DATE(year=2027, month=4, day=30)
        assert "extended by 1 month(s) to 2027-04-30" in again.history[-1].note
    finally:
        clock.offset = dt.timedelta(0)


def test_the_data_privacy_manager_lists_by_due_date_and_enters_correspondence(
    api: Api, dpm: str
) -> None:
    account, person = api.adult()
    first = request(api, person, S.RIGHTS_REQUEST_TYPE_ACCESS)
    clock.offset = dt.timedelta(days=-3)  # an older request is due sooner
    try:
        older = request(api, person, S.RIGHTS_REQUEST_TYPE_RECTIFICATION,
                        corrections=[S.Correction(field="name", value="Alice Smith")])  # fmt: skip
    finally:
        clock.offset = dt.timedelta(0)
    letter = api.accounts.SubmitCorrespondence(
        account_service_pb2.SubmitCorrespondenceRequest(
            kind=account_pb2.CORRESPONDENCE_KIND_CONTACT,
            subject="Please erase me",
            body="I cannot sign in.",
        ),
        metadata=api.auth(person),
    )
    entered = request(
        api, dpm, S.RIGHTS_REQUEST_TYPE_ERASURE,
        account_id=account.account_id, correspondence_id=letter.correspondence_id,
    )  # fmt: skip
    assert entered.channel == S.RIGHTS_REQUEST_CHANNEL_CORRESPONDENCE
    listed = api.rights.ListRightsRequests(
        pb.ListRightsRequestsRequest(states=[S.RIGHTS_REQUEST_STATE_RECEIVED]),
        metadata=api.auth(dpm),
    ).rights_requests
    assert [r.rights_request_id for r in listed] == [
        older.rights_request_id, first.rights_request_id, entered.rights_request_id,
    ]  # fmt: skip
    mine = api.rights.ListRightsRequests(pb.ListRightsRequestsRequest(), metadata=api.auth(person))
    assert len(mine.rights_requests) == 3
    # Only the data privacy manager enters requests for someone else.
    _, other = api.adult("bob")
    failure = rpc_error(
        lambda: request(api, other, S.RIGHTS_REQUEST_TYPE_ACCESS, account_id=account.account_id)
    )
    assert failure.reason == "NOT_YOUR_ACCOUNT"


def test_withdrawal_of_consent_completes_at_once(api: Api) -> None:
    account, person = api.adult()
    api.grant(person, "analytics")
    done = request(api, person, S.RIGHTS_REQUEST_TYPE_WITHDRAWAL_OF_CONSENT, purpose_id="analytics")
    assert done.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    ref = Account.get_by_id(account.account_id).subject_ref
    latest = (
        ConsentEvent.select()
        .where((ConsentEvent.subject_ref == ref) & (ConsentEvent.purpose == "analytics"))
        .order_by(ConsentEvent.seq.desc())
        .first()
    )
    assert latest.event_type == "withdrawn" and latest.collection_method == "rights_request"
    failure = rpc_error(
        lambda: request(
            api, person, S.RIGHTS_REQUEST_TYPE_WITHDRAWAL_OF_CONSENT, purpose_id="analytics"
        )
    )
    assert failure.reason == "CONSENT_NOT_IN_FORCE"


def test_rectification_applies_verified_corrections(api: Api, dpm: str) -> None:
    account, person = api.adult()
    made = request(
        api, person, S.RIGHTS_REQUEST_TYPE_RECTIFICATION,
        corrections=[S.Correction(field="name", value="Alice B. Smith"),
                     S.Correction(field="date_of_birth", value="1990-05-17"),
                     S.Correction(field="email", value="alice.smith@example.org")],
    )  # fmt: skip
    assert Account.get_by_id(account.account_id).name != "Alice B. Smith"
    done = verify(api, dpm, made.rights_request_id)
    assert done.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    row = Account.get_by_id(account.account_id)
    assert (row.name, row.date_of_birth, row.pending_email) == (
        "Alice B. Smith",
        dt.date(1990, 5, 17),
        "alice.smith@example.org",
    )
    assert row.email == "alice@example.com"  # until the new address is confirmed
    assert "confirm" in done.outcome


def test_a_restriction_for_legal_claims_stops_processing_and_monitoring(api: Api, dpm: str) -> None:
    school = build_org(api, "s", members=("pupil1", "pupil2"))
    api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(
            organisation_id=school.organisation_id, plugin_name="school_safeguarding"
        ),
        metadata=api.auth(school.operator),
    )
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    send(api, p1, group, "from one")
    send(api, p2, group, "from two")
    made = request(api, p1.token, S.RIGHTS_REQUEST_TYPE_RESTRICTION,
                   restriction_case=S.RESTRICTION_CASE_LEGAL_CLAIMS)  # fmt: skip
    done = verify(api, dpm, made.rights_request_id)
    assert done.state == S.RIGHTS_REQUEST_STATE_COMPLETED
    (part,) = done.organisation_parts
    assert (part.decision, part.decided_by) == ("monitoring_stops", "plugin:defaults")
    assert ProcessingRestriction.get_by_id(p1.account_id).restriction_case == "legal_claims"
    assert "held from every deletion" in done.outcome
    found = api.monitoring.SearchContent(
        mon.SearchContentRequest(
            organisation_id=school.organisation_id,
            reason=mon.MONITORING_REASON_SAFEGUARDING_CONCERN,
            scope=scope(),
        ),
        metadata=api.auth(school.admin.token),
    )
    assert [i.text for i in found.items] == ["from two"]
    # ChatPro's own processing stops: disclosures to third parties, device analytics.
    recipient = create_recipient(api, school.operator)
    api.grant(p1.token, "sharing.professional_advisers")
    failure = rpc_error(
        lambda: api.disclosures.RecordDisclosure(
            disclosure_service_pb2.RecordDisclosureRequest(
                recipient_id=recipient.recipient_id,
                account_id=p1.account_id,
                data_categories=["identity"],
                reason="claim",
            ),
            metadata=api.auth(api.service_token("support")),
        )
    )
    assert failure.reason == "PROCESSING_RESTRICTED"


def test_an_objection_needs_the_data_privacy_managers_decision(api: Api, dpm: str) -> None:
    _, person = api.adult()
    made = request(api, person, S.RIGHTS_REQUEST_TYPE_OBJECTION,
                   objection_ground=S.OBJECTION_GROUND_LEGITIMATE_INTEREST)  # fmt: skip
    waiting = verify(api, dpm, made.rights_request_id)
    assert waiting.state == S.RIGHTS_REQUEST_STATE_IN_PROGRESS
    done = api.rights.CompleteRightsRequest(
        pb.CompleteRightsRequestRequest(rights_request_id=made.rights_request_id),
        metadata=api.auth(dpm),
    ).rights_request
    assert done.state == S.RIGHTS_REQUEST_STATE_COMPLETED and "upheld" in done.outcome


def test_portability_to_a_third_party_outside_the_eea_is_refused(
    api: Api, unchanged: Unchanged
) -> None:
    operator = api.staff("operator")
    us = create_recipient(api, operator, name="US Cloud Inc", category="it_service_providers",
                          country_code="US")  # fmt: skip
    gb = create_recipient(api, operator, name="New Provider Ltd", category="it_service_providers")
    _, person = api.adult()
    failure = unchanged(lambda: request(api, person, S.RIGHTS_REQUEST_TYPE_PORTABILITY,
                                        recipient_id=us.recipient_id))  # fmt: skip
    assert failure.reason == "TRANSFER_OUTSIDE_EEA_UK"
    failure = unchanged(lambda: request(api, person, S.RIGHTS_REQUEST_TYPE_PORTABILITY,
                                        recipient_id=gb.recipient_id))  # fmt: skip
    assert failure.reason == "CONSENT_REQUIRED"
    api.grant(person, "sharing.it_service_providers")
    made = request(api, person, S.RIGHTS_REQUEST_TYPE_PORTABILITY, recipient_id=gb.recipient_id)
    assert made.recipient_id == gb.recipient_id


def test_a_guardian_makes_a_request_for_the_child(api: Api) -> None:
    service = api.service_token()
    child = api.register(
        username="kid", date_of_birth=child_birthday(12), guardian_email="mum@example.com"
    )
    asked = next(
        e for e in api.outbox_events(service).events if e.HasField("guardian_consent_requested")
    )
    confirmed = api.accounts.ConfirmGuardianConsent(
        account_service_pb2.ConfirmGuardianConsentRequest(
            token=asked.guardian_consent_requested.token
        )
    )
    made = request(api, confirmed.guardian_session_token, S.RIGHTS_REQUEST_TYPE_ACCESS)
    assert (made.channel, made.account_id) == (S.RIGHTS_REQUEST_CHANNEL_GUARDIAN, child.account_id)
    told = [e.rights_request_updated for e in api.outbox_events(service).events
            if e.HasField("rights_request_updated")]  # fmt: skip
    assert told[-1].email == "mum@example.com"  # the guardian is told


def test_processing_resumes_after_a_crash(api: Api, dpm: str, server: Any) -> None:
    account, person = api.adult()
    made = request(api, person, S.RIGHTS_REQUEST_TYPE_RECTIFICATION,
                   corrections=[S.Correction(field="name", value="Resumed Name")])  # fmt: skip
    # As if the server stopped after verification committed, before the step ran.
    RightsRequest.update(state="in_progress", step="execute").where(
        RightsRequest.id == made.rights_request_id
    ).execute()
    assert server.run(server.runtime.rights.resume()) == 1
    assert get(api, person, made.rights_request_id).state == S.RIGHTS_REQUEST_STATE_COMPLETED
    assert Account.get_by_id(account.account_id).name == "Resumed Name"
    assert server.run(server.runtime.rights.resume()) == 0


def test_bad_requests_are_refused_and_change_nothing(api: Api, unchanged: Unchanged) -> None:
    _, person = api.adult()
    cases: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({}, {"type": "REQUIRED"}),
        ({"type": S.RIGHTS_REQUEST_TYPE_RECTIFICATION}, {"corrections": "REQUIRED"}),
        ({"type": S.RIGHTS_REQUEST_TYPE_RESTRICTION}, {"restriction_case": "REQUIRED"}),
        ({"type": S.RIGHTS_REQUEST_TYPE_ACCESS, "purpose_id": "analytics"}, {"purpose_id": "REQUIRED"}),
        ({"type": S.RIGHTS_REQUEST_TYPE_RECTIFICATION,
          "corrections": [S.Correction(field="password", value="x")]}, {"corrections": "UNKNOWN_FIELD"}),
    ]  # fmt: skip
    for fields, violations in cases:
        failure = unchanged(
            partial(
                api.rights.CreateRightsRequest,
                pb.CreateRightsRequestRequest(**fields),
                metadata=api.auth(person),
            )
        )
        assert failure.violations == violations, fields


def test_journey_5_the_access_export_streams_to_the_requester_with_a_checksum(
    api: Api, dpm: str
) -> None:
    school = build_org(api, "s", members=("pupil1", "pupil2"))
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, school.organisation_id, [p2])
    send(api, p1, group, "my own words")
    send(api, p2, group, "somebody else's words")
    made = request(api, p1.token, S.RIGHTS_REQUEST_TYPE_ACCESS)
    not_ready = rpc_error(
        lambda: list(api.rights.StreamRightsExport(
            pb.StreamRightsExportRequest(rights_request_id=made.rights_request_id),
            metadata=api.auth(p1.token),
        ))
    )  # fmt: skip
    assert not_ready.reason == "EXPORT_NOT_READY"
    verify(api, dpm, made.rights_request_id)
    api.rights.AnswerRightsRequest(
        pb.AnswerRightsRequestRequest(
            rights_request_id=made.rights_request_id,
            organisation_id=school.organisation_id,
            decision="exported",
        ),
        metadata=api.auth(school.admin.token),
    )
    chunks = list(
        api.rights.StreamRightsExport(
            pb.StreamRightsExportRequest(rights_request_id=made.rights_request_id),
            metadata=api.auth(p1.token),
        )
    )
    data = b"".join(c.data for c in chunks)
    assert chunks[0].media_type == "application/json" and chunks[0].offset == 0
    assert chunks[-1].sha256 == hashlib.sha256(data).hexdigest()
    document = json.loads(data)
    schema_path = (
        Path(__file__).parents[1]
        / "server/chatpro_privacy/domain/rights/export/data/export.schema.json"
    )
    jsonschema.validate(document, json.loads(schema_path.read_text()))
    text = data.decode()
    assert "my own words" in text and "somebody else's words" not in text
    # ChatPro's staff never receive it: it holds message content (ORG-4).
    failure = rpc_error(
        lambda: list(api.rights.StreamRightsExport(
            pb.StreamRightsExportRequest(rights_request_id=made.rights_request_id),
            metadata=api.auth(dpm),
        ))
    )  # fmt: skip
    assert failure.reason == "REQUESTER_ONLY"


def test_journey_6_a_leaver_is_erased_and_told_what_was_kept(
    api: Api, dpm: str, server: Any
) -> None:
    """The employer's plugin keeps the leaver's messages as its records, pseudonymised, for a
    stated reason; another organisation deletes them; the person is told before their
    address goes; then ChatPro's account data is erased and the ledger holds the erasure."""
    employer = build_org(api, "e", members=("leaver", "colleague"))
    club = build_org(api, "c", members=(), operator=employer.operator)
    api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(
            organisation_id=employer.organisation_id, plugin_name="school_safeguarding"
        ),
        metadata=api.auth(employer.operator),
    )
    leaver, colleague = employer.members["leaver"], employer.members["colleague"]
    join(api, club.organisation_id, club.operator, leaver, organisation_pb2.MEMBER_ROLE_MEMBER)
    work = conversation(api, leaver, employer.organisation_id, [colleague])
    send(api, leaver, work, "handover notes")
    chat = conversation(api, leaver, club.organisation_id, [club.admin])
    send(api, leaver, chat, "see you at training")
    api.accounts.SubmitCorrespondence(
        account_service_pb2.SubmitCorrespondenceRequest(
            kind=account_pb2.CORRESPONDENCE_KIND_CONTACT,
            subject="Complaint",
            body="About my final pay.",
        ),
        metadata=api.auth(leaver.token),
    )
    made = request(api, leaver.token, S.RIGHTS_REQUEST_TYPE_ERASURE)
    waiting = verify(api, dpm, made.rights_request_id)
    parts = {p.organisation_id: p for p in waiting.organisation_parts}
    assert parts[employer.organisation_id].decision == "keep_pseudonymised"
    assert parts[employer.organisation_id].decided_by == "plugin:school_safeguarding"
    assert not parts[club.organisation_id].answered  # no plugin: its administrators answer
    assert waiting.state == S.RIGHTS_REQUEST_STATE_AWAITING_ORGANISATION
    api.rights.AnswerRightsRequest(
        pb.AnswerRightsRequestRequest(
            rights_request_id=made.rights_request_id,
            organisation_id=club.organisation_id,
            decision="delete",
        ),
        metadata=api.auth(club.admin.token),
    )
    failure = rpc_error(
        lambda: api.rights.CompleteRightsRequest(
            pb.CompleteRightsRequestRequest(
                rights_request_id=made.rights_request_id,
                kept_parts=[S.KeptPart(what="devices", reason="because")],
            ),
            metadata=api.auth(dpm),
        )
    )
    assert failure.violations == {"kept_parts": "NOT_KEEPABLE"}
    decided = api.rights.CompleteRightsRequest(
        pb.CompleteRightsRequestRequest(
            rights_request_id=made.rights_request_id,
            kept_parts=[
                S.KeptPart(what="correspondence", reason="a pay dispute may go to a tribunal")
            ],
        ),
        metadata=api.auth(dpm),
    ).rights_request
    # Not erased yet: first the person is told, at the address about to go.
    assert decided.state == S.RIGHTS_REQUEST_STATE_IN_PROGRESS
    mailer = api.service_token("mailer")
    events = api.outbox_events(mailer).events
    notice = [e.rights_request_updated for e in events if e.HasField("rights_request_updated")][-1]
    assert notice.email == "eleaver@example.com"
    assert "a pay dispute may go to a tribunal" in notice.note
    assert "safeguarding records" in notice.note
    api.outbox.AcknowledgeOutboxEvents(
        outbox_service_pb2.AcknowledgeOutboxEventsRequest(
            consumer="mailer", through_sequence=events[-1].sequence
        ),
        metadata=api.auth(mailer),
    )
    server.run(server.runtime.rights.resume())
    done = get(api, dpm, made.rights_request_id)
    assert done.state == S.RIGHTS_REQUEST_STATE_PARTIALLY_COMPLETED
    assert done.account_id == ""
    assert Account.get_or_none(Account.id == leaver.account_id) is None
    assert rpc_error(lambda: api.sign_in("eleaver")).reason == "INVALID_CREDENTIALS"
    kept = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=work), metadata=api.auth(colleague.token)
    ).messages
    assert [(m.text, m.sender_account_id) for m in kept] == [("handover notes", "")]
    gone = api.messaging.ListMessages(
        msg.ListMessagesRequest(conversation_id=chat), metadata=api.auth(club.admin.token)
    ).messages
    assert list(gone) == []
    assert [k.kept_reason for k in KeptCorrespondence.select()] == [
        "a pay dispute may go to a tribunal"
    ]
    assert len(server.runtime.ledger.entries()) == 1
    # RET-5: the colleague's app is told to drop what it cached of the erased member.
    feed = ret_grpc.RetentionServiceStub(api.channel).ListDeletions(
        ret.ListDeletionsRequest(), metadata=api.auth(colleague.token)
    )
    assert [(d.reason, d.organisation_id, d.account_id) for d in feed.deletions] == [
        (ret.DELETION_REASON_ERASED, employer.organisation_id, leaver.account_id)
    ]


def test_a_correction_is_checked_when_asked_for(api: Api, unchanged: Unchanged) -> None:
    _, person = api.adult()
    failure = unchanged(
        lambda: request(api, person, S.RIGHTS_REQUEST_TYPE_RECTIFICATION,
                        corrections=[S.Correction(field="date_of_birth", value="2020-13-45")])
    )  # fmt: skip
    assert failure.violations == {"corrections": "INVALID_DATE"}


def test_an_erasure_under_a_legal_claims_restriction_cannot_be_completed(
    api: Api, dpm: str
) -> None:
    account, person = api.adult()
    made = request(api, person, S.RIGHTS_REQUEST_TYPE_ERASURE)
    verify(api, dpm, made.rights_request_id)
    restriction_row(account.account_id)
    failure = rpc_error(
        lambda: api.rights.CompleteRightsRequest(
            pb.CompleteRightsRequestRequest(rights_request_id=made.rights_request_id),
            metadata=api.auth(dpm),
        )
    )
    assert failure.reason == "HELD_FOR_LEGAL_CLAIMS"
    refused = api.rights.RefuseRightsRequest(
        pb.RefuseRightsRequestRequest(
            rights_request_id=made.rights_request_id, reason="held for legal claims"
        ),
        metadata=api.auth(dpm),
    ).rights_request
    assert refused.state == S.RIGHTS_REQUEST_STATE_REFUSED
