"""Data-subject rights requests (RGT-1 to RGT-9): a state machine with due dates, a full
history, and the requester told of every step through the outbox.

    received -> identity_verification -> in_progress -> awaiting_organisation
             -> completed | partially_completed | refused | cancelled

``Rights`` is put together from one part per idea, each in its own module:

- ``closure``: withdrawing consent, the policy's closing the account (RGT-7);
- ``intake``: making a request (from the person, a guardian, or correspondence entered by
  the data privacy manager), its validation, reading, listing and cancelling it;
- ``workflow``: the state machine: transitions, the history, telling the requester, the
  steps and ``resume`` after a crash;
- ``decisions``: the data privacy manager's: verify identity, extend, refuse, complete;
- ``deadlines``: a request never stalls: organisations told and reminded, the data privacy
  manager warned, and at the due date ChatPro's part goes ahead (RGT-8);
- ``delivery``: a portability export fetched once by the third party chosen (RGT-6);
- ``organisations``: each organisation's part, answered by its plugins or its
  administrators;
- ``execution``: carrying out each right, and the export the requester streams.

"""

from __future__ import annotations

from chatpro_privacy.domain.consent import ledger as consent
from chatpro_privacy.domain.kernel.tokens import ConfirmationTokens
from chatpro_privacy.domain.rights.closure import Closure
from chatpro_privacy.domain.rights.deadlines import Deadlines
from chatpro_privacy.domain.rights.decisions import Decisions
from chatpro_privacy.domain.rights.delivery import Delivery, Exporter
from chatpro_privacy.domain.rights.execution import Eraser, Execution
from chatpro_privacy.domain.rights.organisations import LateEraser, OrganisationParts
from chatpro_privacy.plugin.host import PluginHost
from chatpro_privacy.settings import PolicySettings


class Rights(Closure, Decisions, Deadlines, Delivery, OrganisationParts, Execution):
    """Rights requests, from receipt to completion (see the module docstring)."""

    def __init__(
        self,
        policy: PolicySettings,
        consents: consent.Consents,
        host: PluginHost,
        eraser: Eraser | None = None,
        exporter: Exporter | None = None,
        late_eraser: LateEraser | None = None,
        grants: ConfirmationTokens | None = None,
    ) -> None:
        self.policy = policy
        self.consents = consents
        self.host = host
        self.eraser = eraser
        self.exporter = exporter
        self.late_eraser = late_eraser
        self.grants = grants
