"""AccountService: registration, sign-in and the profile (ACC-1 to ACC-11)."""

from __future__ import annotations

from chatpro.privacy.v1 import account_service_pb2 as pb
from chatpro.privacy.v1 import account_service_pb2_grpc as pb_grpc

from chatpro_privacy import context as call
from chatpro_privacy.domain.accounts import accounts, profile, registration
from chatpro_privacy.domain.accounts.guardians import Guardians
from chatpro_privacy.domain.accounts.provisioning import Provisioning
from chatpro_privacy.domain.accounts.sessions import Sessions
from chatpro_privacy.services.convert import account as convert
from chatpro_privacy.services.convert import account_service as replies
from chatpro_privacy.services.convert.common import SOURCE_NAMES, date_tuple, timestamp
from chatpro_privacy.services.servicer import Context


def peer_host(context: Context) -> str:
    """The end user's address as the edge found it (the peer's, or the one a trusted
    service forwarded): a throttling key, never stored."""
    return call.client_address.get() or str(context.peer() or "")


class AccountService(pb_grpc.AccountServiceServicer):
    def __init__(
        self,
        accounts_: accounts.Accounts,
        sessions: Sessions,
        guardians: Guardians,
        provisioning: Provisioning,
    ) -> None:
        self.provisioning = provisioning
        self.accounts = accounts_
        self.sessions = sessions
        self.guardians = guardians

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        account = await self.accounts.register(
            registration.Registration(
                request_id=request.request_id,
                username=request.username,
                email=request.email,
                name=request.name,
                date_of_birth=date_tuple(request.date_of_birth),
                password=request.password,
                guardian_email=request.guardian_email,
                accepted_policy_version=request.accepted_policy_version,
                profile_picture=request.profile_picture,
                device=convert.device_data(request.device) if request.HasField("device") else None,
                consented_purposes=tuple(request.consented_purposes),
            ),
            peer_host(context),
        )
        return pb.RegisterResponse(account=convert.account(self.accounts.view(account)))

    async def ConfirmGuardianConsent(
        self, request: pb.ConfirmGuardianConsentRequest, context: Context
    ) -> pb.ConfirmGuardianConsentResponse:
        account, guardian = self.accounts.confirm_guardian(request.token)
        return pb.ConfirmGuardianConsentResponse(
            account_id=account.id,
            state=convert.STATES[account.state],
            guardian_session_token=guardian.token,
            guardian_session_expire_time=timestamp(guardian.expires_at),
        )

    async def CompleteAccountSetup(
        self, request: pb.CompleteAccountSetupRequest, context: Context
    ) -> pb.CompleteAccountSetupResponse:
        account = await self.provisioning.complete_setup(
            request.token, request.username, request.password, request.accepted_policy_version
        )
        return pb.CompleteAccountSetupResponse(
            account_id=account.id, state=convert.STATES[account.state]
        )

    async def SignIn(self, request: pb.SignInRequest, context: Context) -> pb.SignInResponse:
        signed_in = await self.sessions.sign_in(request.login, request.password, peer_host(context))
        return replies.session(pb.SignInResponse, signed_in)

    async def SignOut(self, request: pb.SignOutRequest, context: Context) -> pb.SignOutResponse:
        self.sessions.sign_out(call.principal.get())
        return pb.SignOutResponse()

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: Context
    ) -> pb.GetAccountResponse:
        view = self.accounts.get(call.principal.get(), request.account_id)
        return pb.GetAccountResponse(account=convert.account(view))

    async def UpdateProfile(
        self, request: pb.UpdateProfileRequest, context: Context
    ) -> pb.UpdateProfileResponse:
        p = request.profile
        view, sent = self.accounts.update_profile(
            call.principal.get(),
            profile.ProfileChanges(
                paths=list(request.update_mask.paths),
                username=p.username,
                email=p.email,
                name=p.name,
                date_of_birth=date_tuple(p.date_of_birth),
                profile_picture=p.profile_picture,
                guardian_email=p.guardian_email,
            ),
        )
        return pb.UpdateProfileResponse(account=convert.account(view), email_confirmation_sent=sent)

    async def ConfirmEmailChange(
        self, request: pb.ConfirmEmailChangeRequest, context: Context
    ) -> pb.ConfirmEmailChangeResponse:
        view = self.accounts.confirm_email(call.principal.get(), request.token)
        return pb.ConfirmEmailChangeResponse(account=convert.account(view))

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: Context
    ) -> pb.ChangePasswordResponse:
        revoked = await self.accounts.change_password(
            call.principal.get(), request.current_password, request.new_password
        )
        return pb.ChangePasswordResponse(revoked_sessions=revoked)

    async def RecordDeviceUse(
        self, request: pb.RecordDeviceUseRequest, context: Context
    ) -> pb.RecordDeviceUseResponse:
        used = self.accounts.record_device_use(
            call.principal.get(),
            request.account_id,
            convert.device_data(request.device),
            SOURCE_NAMES.get(request.source, "" if request.source == 0 else "unknown"),
        )
        return pb.RecordDeviceUseResponse(device=convert.device(used))

    async def ListDevices(
        self, request: pb.ListDevicesRequest, context: Context
    ) -> pb.ListDevicesResponse:
        found = self.accounts.list_devices(call.principal.get(), request.account_id)
        return pb.ListDevicesResponse(devices=[convert.device(d) for d in found])

    async def RecordInstallationEvent(
        self, request: pb.RecordInstallationEventRequest, context: Context
    ) -> pb.RecordInstallationEventResponse:
        event_id = self.accounts.record_installation(
            call.principal.get(),
            request.account_id,
            request.application_number,
            request.operating_system_type,
            convert.INSTALLATION_EVENTS.get(request.event_type, ""),
        )
        return pb.RecordInstallationEventResponse(event_id=event_id)

    async def SubmitCorrespondence(
        self, request: pb.SubmitCorrespondenceRequest, context: Context
    ) -> pb.SubmitCorrespondenceResponse:
        record = self.accounts.submit_correspondence(
            call.principal.get(),
            convert.CORRESPONDENCE_KINDS.get(request.kind, ""),
            request.subject,
            request.body,
        )
        return pb.SubmitCorrespondenceResponse(
            correspondence_id=record.id, receive_time=timestamp(record.received_at)
        )

    async def RequestGuardianAccess(
        self, request: pb.RequestGuardianAccessRequest, context: Context
    ) -> pb.RequestGuardianAccessResponse:
        self.guardians.request_access(request.child_login)
        return pb.RequestGuardianAccessResponse()

    async def StartGuardianSession(
        self, request: pb.StartGuardianSessionRequest, context: Context
    ) -> pb.StartGuardianSessionResponse:
        session = self.guardians.start_session(request.token)
        return replies.session(pb.StartGuardianSessionResponse, session)
