"""OrganisationService: organisations, their statement and their plugins (PLG-1 to PLG-4)."""

from __future__ import annotations

from chatpro.privacy.v1 import organisation_service_pb2 as pb
from chatpro.privacy.v1 import organisation_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.accounts.provisioning import Provision, Provisioning
from chatpro_privacy.domain.content.flagging import Flagging
from chatpro_privacy.domain.organisations import (
    member_lifecycle,
    memberships,
    organisations,
    plugin_settings,
    retention_periods,
    statements,
)
from chatpro_privacy.domain.organisations.retention_periods import Retention
from chatpro_privacy.domain.retention import legal_holds
from chatpro_privacy.domain.vault.envelope import Vault
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.services.convert import organisation as convert
from chatpro_privacy.services.convert.common import date_tuple, time_field
from chatpro_privacy.services.convert.organisation_service import export_format, legal_hold
from chatpro_privacy.services.page_budget import ByteBudget
from chatpro_privacy.services.servicer import Context


class OrganisationService(pb_grpc.OrganisationServiceServicer):
    def __init__(
        self,
        host: PluginHost,
        provisioning: Provisioning,
        retention: Retention,
        vault: Vault,
        flagging: Flagging,
    ) -> None:
        self.host = host
        self.provisioning = provisioning
        self.retention = retention
        self.vault = vault
        self.flagging = flagging

    async def CreateOrganisation(
        self, request: pb.CreateOrganisationRequest, context: Context
    ) -> pb.CreateOrganisationResponse:
        org = organisations.create(
            call.principal.get(), request.name, request.privacy_contact_email
        )
        return pb.CreateOrganisationResponse(organisation=convert.organisation(org))

    async def GetOrganisation(
        self, request: pb.GetOrganisationRequest, context: Context
    ) -> pb.GetOrganisationResponse:
        return pb.GetOrganisationResponse(
            organisation=convert.organisation(
                organisations.get(call.principal.get(), request.organisation_id)
            )
        )

    async def PublishStatement(
        self, request: pb.PublishStatementRequest, context: Context
    ) -> pb.PublishStatementResponse:
        statement = statements.publish_statement(
            call.principal.get(),
            self.host,
            request.organisation_id,
            request.version,
            request.text,
            dict(request.retention_months),
            time_field(request, "effective_time"),
        )
        return pb.PublishStatementResponse(statement=convert.statement(statement))

    async def GetStatement(
        self, request: pb.GetStatementRequest, context: Context
    ) -> pb.GetStatementResponse:
        statement = statements.statement_in_effect(call.principal.get(), request.organisation_id)
        return pb.GetStatementResponse(statement=convert.statement(statement))

    async def ListOrganisationPlugins(
        self, request: pb.ListOrganisationPluginsRequest, context: Context
    ) -> pb.ListOrganisationPluginsResponse:
        statuses = plugin_settings.plugins(call.principal.get(), self.host, request.organisation_id)
        return pb.ListOrganisationPluginsResponse(
            plugins=[convert.plugin_status(p) for p in statuses]
        )

    async def EnablePlugin(
        self, request: pb.EnablePluginRequest, context: Context
    ) -> pb.EnablePluginResponse:
        status = await plugin_settings.enable(
            call.principal.get(),
            self.host,
            request.organisation_id,
            request.plugin_name,
            request.config_json,
            position=request.position,
        )
        # Messages sent while its plugins could not be asked are asked about now.
        await self.flagging.catch_up(request.organisation_id)
        return pb.EnablePluginResponse(plugin=convert.plugin_status(status))

    async def ConfigurePlugin(
        self, request: pb.ConfigurePluginRequest, context: Context
    ) -> pb.ConfigurePluginResponse:
        status = await plugin_settings.enable(
            call.principal.get(),
            self.host,
            request.organisation_id,
            request.plugin_name,
            request.config_json,
            only_reconfigure=True,
        )
        return pb.ConfigurePluginResponse(plugin=convert.plugin_status(status))

    async def DisablePlugin(
        self, request: pb.DisablePluginRequest, context: Context
    ) -> pb.DisablePluginResponse:
        status = plugin_settings.disable(
            call.principal.get(), self.host, request.organisation_id, request.plugin_name
        )
        return pb.DisablePluginResponse(plugin=convert.plugin_status(status))

    async def GetRetentionPolicy(
        self, request: pb.GetRetentionPolicyRequest, context: Context
    ) -> pb.GetRetentionPolicyResponse:
        decisions = await retention_periods.retention_policy(
            call.principal.get(), self.host, request.organisation_id
        )
        return pb.GetRetentionPolicyResponse(
            periods=[convert.retention_period(d) for d in decisions]
        )

    async def ListExportFormats(
        self, request: pb.ListExportFormatsRequest, context: Context
    ) -> pb.ListExportFormatsResponse:
        formats = await plugin_settings.export_formats(
            call.principal.get(), self.host, request.organisation_id
        )
        return pb.ListExportFormatsResponse(
            formats=[export_format(plugin, f) for plugin, f in formats]
        )

    async def InviteMember(
        self, request: pb.InviteMemberRequest, context: Context
    ) -> pb.InviteMemberResponse:
        row = memberships.invite(
            call.principal.get(),
            request.organisation_id,
            request.account_id,
            convert.MEMBER_ROLE_NAMES.get(request.role, ""),
            self.provisioning.policy.age_of_digital_consent,
        )
        return pb.InviteMemberResponse(membership=convert.membership(row))

    async def AcceptInvitation(
        self, request: pb.AcceptInvitationRequest, context: Context
    ) -> pb.AcceptInvitationResponse:
        row = memberships.accept(
            call.principal.get(),
            request.organisation_id,
            request.statement_version,
            request.mobile_number,
        )
        await member_lifecycle.joined(self.host, row)
        return pb.AcceptInvitationResponse(membership=convert.membership(row))

    async def RemoveMember(
        self, request: pb.RemoveMemberRequest, context: Context
    ) -> pb.RemoveMemberResponse:
        await member_lifecycle.remove(
            call.principal.get(),
            self.host,
            self.vault,
            request.organisation_id,
            request.account_id,
        )
        return pb.RemoveMemberResponse()

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: Context
    ) -> pb.ListMembersResponse:
        budget = ByteBudget(convert.membership)
        page = memberships.members(
            call.principal.get(),
            request.organisation_id,
            request.page_size,
            request.page_token,
            budget,
        )
        return pb.ListMembersResponse(memberships=budget.messages, next_page_token=page.next_token)

    async def ListMyMemberships(
        self, request: pb.ListMyMembershipsRequest, context: Context
    ) -> pb.ListMyMembershipsResponse:
        return pb.ListMyMembershipsResponse(
            memberships=[convert.membership(m) for m in memberships.mine(call.principal.get())]
        )

    async def ProvisionMember(
        self, request: pb.ProvisionMemberRequest, context: Context
    ) -> pb.ProvisionMemberResponse:
        account_id, membership = self.provisioning.provision(
            call.principal.get(),
            Provision(
                organisation_id=request.organisation_id,
                name=request.name,
                date_of_birth=date_tuple(request.date_of_birth),
                email=request.email,
                guardian_email=request.guardian_email,
                role=convert.MEMBER_ROLE_NAMES.get(request.role, ""),
                request_id=request.request_id,
            ),
        )
        return pb.ProvisionMemberResponse(
            account_id=account_id, membership=convert.membership(membership)
        )

    async def AcknowledgeStatement(
        self, request: pb.AcknowledgeStatementRequest, context: Context
    ) -> pb.AcknowledgeStatementResponse:
        row = memberships.acknowledge(
            call.principal.get(), request.organisation_id, request.statement_version
        )
        return pb.AcknowledgeStatementResponse(membership=convert.membership(row))

    async def PlaceLegalHold(
        self, request: pb.PlaceLegalHoldRequest, context: Context
    ) -> pb.PlaceLegalHoldResponse:
        hold = legal_holds.place(
            call.principal.get(),
            request.organisation_id,
            request.account_id,
            request.conversation_id,
            request.reason,
        )
        return pb.PlaceLegalHoldResponse(legal_hold=legal_hold(hold))

    async def ReleaseLegalHold(
        self, request: pb.ReleaseLegalHoldRequest, context: Context
    ) -> pb.ReleaseLegalHoldResponse:
        hold = legal_holds.release(
            call.principal.get(), request.organisation_id, request.legal_hold_id
        )
        return pb.ReleaseLegalHoldResponse(legal_hold=legal_hold(hold))

    async def ListLegalHolds(
        self, request: pb.ListLegalHoldsRequest, context: Context
    ) -> pb.ListLegalHoldsResponse:
        found = legal_holds.holds(call.principal.get(), request.organisation_id)
        return pb.ListLegalHoldsResponse(legal_holds=[legal_hold(h) for h in found])

    async def PreviewRetentionChange(
        self, request: pb.PreviewRetentionChangeRequest, context: Context
    ) -> pb.PreviewRetentionChangeResponse:
        preview = await legal_holds.preview(
            call.principal.get(),
            self.retention,
            request.organisation_id,
            request.content_kind,
            request.months,
        )
        return pb.PreviewRetentionChangeResponse(
            would_delete=preview.would_delete,
            would_keep=preview.would_keep,
            due_now=preview.due_now,
        )
