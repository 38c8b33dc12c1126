"""Journey 3 (ACC-6, ACC-3, CON-5, PLG-1): a school joins, provisions pupils from its
records, each pupil sets up their account and acknowledges the statement; a later statement
announcing longer retention is acknowledged again and covers only newer content."""

from __future__ import annotations

import datetime as dt

import grpc
from chatpro.privacy.v1 import account_pb2, account_service_pb2, organisation_pb2
from chatpro.privacy.v1 import organisation_service_pb2 as org_pb
from chatpro_privacy.clock import clock
from chatpro_privacy.storage.models import Account, AccountFieldSource, ConsentEvent
from helpers import Api, Unchanged, child_birthday, rpc_error
from orgs import (
    Person,
    accept,
    build_org,
    complete,
    conversation,
    provision,
    send,
    setup_token,
)


def test_a_school_provisions_pupils_who_set_up_and_join(api: Api, unchanged: Unchanged) -> None:
    school = build_org(api, "s", members=(), retention_months={"message": 24})
    mailer = api.service_token("mailer")
    org_id = school.organisation_id
    teen = provision(api, org_id, school.admin.token)
    assert teen.membership.state == organisation_pb2.MEMBERSHIP_STATE_INVITED
    # A retry gives the same account; the same request id for someone else is refused.
    assert provision(api, org_id, school.admin.token).account_id == teen.account_id
    assert unchanged(
        lambda: provision(api, org_id, school.admin.token, name="Someone Else")
    ).violations == {"request_id": "REQUEST_ID_REUSED"}
    # A child still needs a guardian's consent, and so a guardian's address.
    assert unchanged(
        lambda: provision(
            api,
            org_id,
            school.admin.token,
            email="kid@example.com",
            date_of_birth=child_birthday(11),
            request_id="22222222-bbbb",
        )
    ).violations == {"guardian_email": "GUARDIAN_EMAIL_REQUIRED"}
    child = provision(
        api,
        org_id,
        school.admin.token,
        name="Kim Kid",
        email="kid@example.com",
        date_of_birth=child_birthday(11),
        guardian_email="parent@example.com",
        request_id="22222222-bbbb",
    )
    # Members cannot provision; outsiders do not see the school.
    pupil_failure = rpc_error(
        lambda: provision(api, org_id, api.adult("nosy")[1], request_id="33333333-cccc")
    )
    assert pupil_failure.code == grpc.StatusCode.NOT_FOUND
    sources = {
        s.field: s.source
        for s in AccountFieldSource.select().where(AccountFieldSource.account == teen.account_id)
    }
    assert sources == {
        "name": "organisation",
        "date_of_birth": "organisation",
        "email": "organisation",
    }

    # Nobody can sign in before set-up: there is no password to match.
    failure = rpc_error(lambda: api.sign_in("pat@example.com", "!provisioned"))
    assert failure.reason == "INVALID_CREDENTIALS"

    token = setup_token(api, mailer, teen.account_id)
    done = complete(api, token, "pat")
    assert done.state == account_pb2.ACCOUNT_STATE_ACTIVE
    assert rpc_error(lambda: complete(api, token, "pat2")).violations == {
        "token": "TOKEN_ALREADY_USED"
    }
    pat = Person(teen.account_id, api.sign_in("pat", "a long pupil passphrase"))
    accept(api, org_id, pat.token)
    ack = ConsentEvent.get(
        (ConsentEvent.purpose == "organisation_statement")
        & (ConsentEvent.subject_ref == Account.get_by_id(pat.account_id).subject_ref)
    )
    assert ack.event_type == "acknowledged"

    kid_done = complete(api, setup_token(api, mailer, child.account_id), "kim")
    assert kid_done.state == account_pb2.ACCOUNT_STATE_PENDING_GUARDIAN_CONSENT
    events = api.outbox_events(mailer).events
    (guardian,) = [
        e.guardian_consent_requested for e in events if e.HasField("guardian_consent_requested")
    ]
    assert (guardian.guardian_email, guardian.child_name) == ("parent@example.com", "Kim Kid")
    assert rpc_error(lambda: api.sign_in("kim", "a long pupil passphrase")).reason == (
        "GUARDIAN_CONSENT_PENDING"
    )
    api.accounts.ConfirmGuardianConsent(
        account_service_pb2.ConfirmGuardianConsentRequest(token=guardian.token)
    )
    kim = Person(child.account_id, api.sign_in("kim", "a long pupil passphrase"))
    accept(api, org_id, kim.token)
    group = conversation(api, pat, org_id, [kim])
    assert send(api, kim, group, "hi").text == "hi"


def test_a_longer_retention_statement_is_acknowledged_again(api: Api, unchanged: Unchanged) -> None:
    school = build_org(api, "s", members=("pupil1", "pupil2"))
    org_id = school.organisation_id
    api.orgs.EnablePlugin(
        org_pb.EnablePluginRequest(organisation_id=org_id, plugin_name="school_safeguarding"),
        metadata=api.auth(school.operator),
    )
    p1, p2 = school.members["pupil1"], school.members["pupil2"]
    group = conversation(api, p1, org_id, [p2])

    def periods() -> dict[str, organisation_pb2.RetentionPeriod]:
        response = api.orgs.GetRetentionPolicy(
            org_pb.GetRetentionPolicyRequest(organisation_id=org_id),
            metadata=api.auth(school.admin.token),
        )
        return {p.content_kind: p for p in response.periods}

    # The plugin wants 24 months; the statement announces 12, so 12 it is.
    assert periods()["message"].months == 12
    assert not periods()["message"].HasField("applies_to_content_after")
    clock.offset = dt.timedelta(days=1)
    published = api.orgs.PublishStatement(
        org_pb.PublishStatementRequest(
            organisation_id=org_id,
            version="2026-06-01",
            text="We keep messages 24 months.",
            retention_months={"message": 24},
        ),
        metadata=api.auth(school.operator),
    ).statement
    assert published.requires_reacknowledgement
    period = periods()["message"]
    assert (period.months, period.applies_to_content_after) == (24, published.effective_time)

    failure = unchanged(lambda: send(api, p1, group, "before acknowledging"))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "STATEMENT_ACKNOWLEDGEMENT_REQUIRED",
    )
    events = api.outbox_events(api.service_token()).events
    asked = sorted(
        e.account_id for e in events if e.HasField("statement_acknowledgement_requested")
    )
    assert asked == sorted([school.admin.account_id, p1.account_id, p2.account_id])
    assert (
        unchanged(
            lambda: api.orgs.AcknowledgeStatement(
                org_pb.AcknowledgeStatementRequest(
                    organisation_id=org_id, statement_version="2026-01-01"
                ),
                metadata=api.auth(p1.token),
            )
        ).reason
        == "STATEMENT_VERSION_NOT_CURRENT"
    )
    membership = api.orgs.AcknowledgeStatement(
        org_pb.AcknowledgeStatementRequest(organisation_id=org_id, statement_version="2026-06-01"),
        metadata=api.auth(p1.token),
    ).membership
    assert (
        membership.acknowledged_statement_version,
        membership.acknowledgement_required_version,
    ) == (
        "2026-06-01",
        "",
    )
    assert send(api, p1, group, "after acknowledging").text == "after acknowledging"
    # A shorter or equal period asks nothing more of anyone.
    shorter = api.orgs.PublishStatement(
        org_pb.PublishStatementRequest(
            organisation_id=org_id,
            version="2026-07-01",
            text="Shorter.",
            retention_months={"message": 18},
        ),
        metadata=api.auth(school.operator),
    ).statement
    assert not shorter.requires_reacknowledgement
    clock.offset = dt.timedelta(0)
