"""Versioned notices: the privacy policy now, organisations' Privacy and Rules statements
later (CON-1, CON-5). A notice has versions with an effective time; one may require
re-acceptance; a person has accepted some version. These rules do not depend on where
the versions are stored.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from chatpro_privacy.domain.kernel.errors import Violations

VERSION_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}(\.\d{1,3})?$")
MAX_TEXT = 200_000
MAX_SUMMARY = 2_000


@dataclass(frozen=True)
class NoticeVersion:
    version: str
    effective_at: dt.datetime
    requires_reacceptance: bool


class NoticeHistory:
    """A notice's versions in effective order, answering what applies at a time."""

    def __init__(self, versions: Iterable[NoticeVersion]) -> None:
        self.versions = sorted(versions, key=lambda v: v.effective_at)
        self._by_name = {v.version: v for v in self.versions}

    def get(self, version: str) -> NoticeVersion | None:
        return self._by_name.get(version)

    def current(self, now: dt.datetime) -> NoticeVersion | None:
        effective = [v for v in self.versions if v.effective_at <= now]
        return effective[-1] if effective else None

    def required(self, now: dt.datetime) -> NoticeVersion | None:
        """The newest version in effect that requires re-acceptance, if any."""
        for version in reversed(self.versions):
            if version.effective_at <= now and version.requires_reacceptance:
                return version
        return None

    def outstanding(self, accepted: str | None, now: dt.datetime) -> NoticeVersion | None:
        """The version a person must still accept before going on, or None."""
        required = self.required(now)
        if required is None:
            return None
        mine = self.get(accepted) if accepted else None
        if mine is not None and mine.effective_at >= required.effective_at:
            return None
        current = self.current(now)
        return current if current is not None else required

    def validate_new(
        self,
        v: Violations,
        version: str,
        effective_at: dt.datetime,
        text: str,
        summary: str,
        now: dt.datetime,
    ) -> None:
        if not version:
            v.add("version", "is required", "REQUIRED")
        elif not VERSION_NAME.match(version):
            v.add("version", "must be YYYY-MM-DD, optionally with .N", "INVALID_FORMAT")
        elif version in self._by_name:
            v.add("version", "exists already", "VERSION_EXISTS")
        if not text.strip():
            v.add("text", "is required", "REQUIRED")
        elif len(text) > MAX_TEXT:
            v.add("text", f"must be at most {MAX_TEXT} characters", "TOO_LONG")
        if not summary.strip():
            v.add("change_summary", "is required", "REQUIRED")
        elif len(summary) > MAX_SUMMARY:
            v.add("change_summary", f"must be at most {MAX_SUMMARY} characters", "TOO_LONG")
        latest = self.current(now)
        if latest is not None and effective_at < latest.effective_at:
            v.add(
                "effective_time",
                f"must not be before the version in effect ({latest.version})",
                "BEFORE_CURRENT_VERSION",
            )
