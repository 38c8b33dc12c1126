"""Account use cases (ACC-1 to ACC-11) as one object for the services: registration, the
profile, device and installation records and correspondence each live in their own module."""

from __future__ import annotations

from chatpro_privacy.domain.accounts.correspondence import Correspondences
from chatpro_privacy.domain.accounts.devices import DeviceRecords
from chatpro_privacy.domain.accounts.profile import Profiles
from chatpro_privacy.domain.accounts.registration import Registrations
from chatpro_privacy.domain.accounts.sessions import Sessions
from chatpro_privacy.domain.kernel import tokens
from chatpro_privacy.domain.kernel.passwords import Passwords
from chatpro_privacy.settings import PolicySettings


class Accounts(Registrations, Profiles, DeviceRecords, Correspondences):
    def __init__(
        self,
        policy: PolicySettings,
        passwords: Passwords,
        confirmations: tokens.ConfirmationTokens,
        sessions: Sessions,
    ) -> None:
        self.policy = policy
        self.passwords = passwords
        self.confirmations = confirmations
        self.sessions = sessions
        self.register_rate = sessions.throttles(
            "register.peer_rate", policy.register_per_peer, policy.peer_rate_window
        )
