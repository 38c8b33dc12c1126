"""Leases on the sweep's cursors: several server processes may sweep at once (on PostgreSQL
or SQLite alike), and each cursor is worked on by one of them at a time; a dead process's
lease runs out, so another picks its work up. The sweep as a whole holds one too (a cursor
whose position is unused, see ``jobs/scheduler.py``), so that replicas take turns."""

from __future__ import annotations

import datetime as dt

from chatpro_privacy.clock import clock
from chatpro_privacy.storage.db import database
from chatpro_privacy.storage.models import SweepCursor

LEASE = dt.timedelta(minutes=2)


class Leases:
    """One process at a time per cursor: a row it claims until a deadline it keeps renewing."""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def acquire(self, name: str) -> bool:
        now = clock.now()
        with database.atomic():
            SweepCursor.insert(
                name=name, position=0, owner=None, lease_until=None, updated_at=now
            ).on_conflict_ignore().execute()
            claimed = (
                SweepCursor.update(owner=self.owner, lease_until=now + LEASE, updated_at=now)
                .where(
                    (SweepCursor.name == name)
                    & (
                        SweepCursor.owner.is_null()
                        | (SweepCursor.owner == self.owner)
                        | (SweepCursor.lease_until < now)
                    )
                )
                .execute()
            )
        return bool(claimed)

    def release(self, name: str) -> None:
        with database.atomic():
            SweepCursor.update(owner=None, lease_until=None).where(
                (SweepCursor.name == name) & (SweepCursor.owner == self.owner)
            ).execute()

    def holder(self, name: str) -> str | None:
        """Who holds the lease now, if anyone does."""
        row = SweepCursor.get_or_none(
            (SweepCursor.name == name) & (SweepCursor.lease_until >= clock.now())
        )
        return str(row.owner) if row and row.owner else None

    def position(self, name: str) -> int:
        row = SweepCursor.get_or_none(SweepCursor.name == name)
        return int(row.position) if row else 0

    def advance(self, name: str, position: int) -> bool:
        """Inside the batch's transaction: move the cursor and renew the lease, if still ours."""
        now = clock.now()
        return bool(
            SweepCursor.update(position=position, lease_until=now + LEASE, updated_at=now)
            .where((SweepCursor.name == name) & (SweepCursor.owner == self.owner))
            .execute()
        )
