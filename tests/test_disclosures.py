"""Recipients and the disclosure log (SEC-1), consent per category (CON-3), and no
transfer outside the EEA and UK (SEC-2)."""

from __future__ import annotations

from functools import partial
from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import consent_pb2, disclosure_service_pb2
from chatpro_privacy.storage.models import Account, Disclosure
from helpers import Api, Unchanged, create_recipient, disclose, rpc_error


def test_recipients_are_registered_by_operators(api: Api, unchanged: Unchanged) -> None:
    operator = api.staff("operator")
    _, person = api.adult()
    denied = unchanged(lambda: create_recipient(api, person))
    assert denied.reason == "OPERATORS_ONLY"
    created = create_recipient(api, operator)
    assert created.recipient_id and created.country_code == "GB"
    listed = api.disclosures.ListRecipients(
        disclosure_service_pb2.ListRecipientsRequest(), metadata=api.auth(person)
    )
    assert [r.name for r in listed.recipients] == ["Smith & Co Solicitors"]


@pytest.mark.parametrize(
    ("fields", "violations"),
    [
        ({"name": ""}, {"recipient.name": "REQUIRED"}),
        ({"category": "friends"}, {"recipient.category": "UNKNOWN_CATEGORY"}),
        ({"country_code": "usa"}, {"recipient.country_code": "INVALID_FORMAT"}),
        (
            {"lawful_basis": consent_pb2.LAWFUL_BASIS_UNSPECIFIED},
            {"recipient.lawful_basis": "REQUIRED"},
        ),
    ],
)
def test_bad_recipients_are_refused(
    api: Api, unchanged: Unchanged, fields: dict[str, Any], violations: dict[str, str]
) -> None:
    operator = api.staff("operator")
    failure = unchanged(lambda: create_recipient(api, operator, **fields))
    assert failure.violations == violations


def test_disclosure_needs_consent_for_the_category(api: Api, unchanged: Unchanged) -> None:
    operator = api.staff("operator")
    adviser = create_recipient(api, operator)
    account, person = api.adult()
    service = api.service_token("claims")
    refused = unchanged(lambda: disclose(api, service, adviser.recipient_id, account.account_id))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONSENT_REQUIRED",
    )
    assert refused.metadata["purpose_id"] == "sharing.professional_advisers"
    api.grant(person, "sharing.professional_advisers")
    logged = disclose(
        api, service, adviser.recipient_id, account.account_id, ("identity", "contact")
    ).disclosure
    stored = Account.get_by_id(account.account_id)
    assert logged.subject_id == stored.subject_ref  # the log keeps the pseudonym, not the person
    assert list(logged.data_categories) == ["contact", "identity"]
    api.withdraw(person, "sharing.professional_advisers")
    after = unchanged(lambda: disclose(api, service, adviser.recipient_id, account.account_id))
    assert after.reason == "CONSENT_REQUIRED"
    mine = api.disclosures.ListDisclosures(
        disclosure_service_pb2.ListDisclosuresRequest(), metadata=api.auth(person)
    )
    assert [d.disclosure_id for d in mine.disclosures] == [logged.disclosure_id]


def test_disclosure_outside_the_eea_and_uk_is_refused_sec2(api: Api, unchanged: Unchanged) -> None:
    operator = api.staff("operator")
    us = create_recipient(
        api, operator, name="US Cloud Inc", category="it_service_providers", country_code="US"
    )
    account, person = api.adult()
    api.grant(person, "sharing.it_service_providers")
    service = api.service_token("support")
    refused = unchanged(lambda: disclose(api, service, us.recipient_id, account.account_id))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "TRANSFER_OUTSIDE_EEA_UK",
    )
    assert refused.metadata["country_code"] == "US" and refused.metadata["country_list_version"]
    ie = create_recipient(
        api, operator, name="EU Hosting Ltd", category="it_service_providers", country_code="IE"
    )
    assert (
        disclose(api, service, ie.recipient_id, account.account_id).disclosure.recipient_id
        == ie.recipient_id
    )


def test_legally_required_reporting_needs_no_consent(api: Api) -> None:
    operator = api.staff("operator")
    hmrc = create_recipient(api, operator, name="HM Revenue and Customs", category="hmrc_and_regulators",
                  lawful_basis=consent_pb2.LAWFUL_BASIS_LEGAL_OBLIGATION)  # fmt: skip
    account, _ = api.adult()
    service = api.service_token("reporting")
    logged = disclose(api, service, hmrc.recipient_id, account.account_id).disclosure
    assert logged.lawful_basis == consent_pb2.LAWFUL_BASIS_LEGAL_OBLIGATION


def test_only_services_and_the_dpm_record_disclosures(api: Api, unchanged: Unchanged) -> None:
    operator = api.staff("operator")
    hmrc = create_recipient(
        api,
        operator,
        category="hmrc_and_regulators",
        lawful_basis=consent_pb2.LAWFUL_BASIS_LEGAL_OBLIGATION,
    )
    account, person = api.adult()
    denied = unchanged(lambda: disclose(api, person, hmrc.recipient_id, account.account_id))
    assert denied.reason == "SERVICES_ONLY"
    service = api.service_token("reporting")
    for kwargs, expected in (
        ({"recipient_id": "nope"}, (grpc.StatusCode.NOT_FOUND, "RECIPIENT_NOT_FOUND")),
        ({"account_id": "nope"}, (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")),
        ({"categories": ("thoughts",)}, (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_CATEGORY")),
        ({"categories": ()}, (grpc.StatusCode.INVALID_ARGUMENT, "REQUIRED")),
    ):
        args: dict[str, Any] = {
            "recipient_id": hmrc.recipient_id,
            "account_id": account.account_id,
            **kwargs,
        }
        failure = unchanged(
            partial(
                disclose,
                api,
                service,
                args["recipient_id"],
                args["account_id"],
                args.get("categories", ("identity",)),
            )
        )
        assert (failure.code, failure.reason) == expected
    assert Disclosure.select().count() == 0
    assert (
        rpc_error(lambda: disclose(api, operator, hmrc.recipient_id, account.account_id)).reason
        == "SERVICES_ONLY"
    )


def test_the_basis_comes_from_the_register_not_the_recipient(
    api: Api, unchanged: Unchanged
) -> None:
    operator = api.staff("operator")
    # Sharing with professional advisers rests on consent: a "contract" adviser would skip it.
    failure = unchanged(
        lambda: create_recipient(api, operator, lawful_basis=consent_pb2.LAWFUL_BASIS_CONTRACT)
    )
    assert failure.violations == {"recipient.lawful_basis": "BASIS_NOT_IN_REGISTER"}


def test_categories_beyond_the_consented_purpose_are_refused(
    api: Api, unchanged: Unchanged
) -> None:
    operator = api.staff("operator")
    adviser = create_recipient(api, operator)
    account, person = api.adult()
    api.grant(person, "sharing.professional_advisers")  # identity and contact only
    service = api.service_token("claims")
    failure = unchanged(
        lambda: disclose(
            api, service, adviser.recipient_id, account.account_id, ("identity", "device")
        )
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CATEGORIES_NOT_COVERED",
    )
