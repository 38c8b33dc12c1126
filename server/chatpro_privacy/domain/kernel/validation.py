"""Field rules for the account data of ACC-2. Each check adds to a ``Violations`` list and
returns the normalised value, so one response can name every bad field at once."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from email_validator import EmailNotValidError, validate_email

from chatpro_privacy.domain.kernel.errors import Violations

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$")
MAX_EMAIL = 254
MAX_NAME = 100
MIN_PASSWORD = 10
MAX_PASSWORD = 256
MAX_PICTURE_BYTES = 256 * 1024
MAX_DEVICE_FIELD = 100
MAX_DEVICE_ID = 128
MAX_SUBJECT = 200
MAX_BODY = 20_000
_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_COMMON_PASSWORDS = frozenset(
    {
        "password", "password1", "password12", "password123", "password1234",
        "1234567890", "12345678910", "qwertyuiop", "qwerty1234", "iloveyou12",
        "letmein123", "welcome123", "abcdefghij", "abc1234567", "0987654321",
        "1q2w3e4r5t", "passw0rd12", "chatpro123", "football12", "admin12345",
    }
)  # fmt: skip


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in text)


def required_text(
    v: Violations, field: str, value: str, max_len: int, *, allow_newlines: bool = False
) -> str:
    text = value.strip()
    if not text:
        v.add(field, "is required", "REQUIRED")
    elif len(text) > max_len:
        v.add(field, f"must be at most {max_len} characters", "TOO_LONG")
    elif _has_control(text.replace("\n", "").replace("\r", "") if allow_newlines else text):
        v.add(field, "must not contain control characters", "INVALID_CHARACTERS")
    return text


def username(v: Violations, value: str, field: str = "username") -> tuple[str, str]:
    """The username as typed and its case-insensitive key."""
    if not value:
        v.add(field, "is required", "REQUIRED")
    elif len(value) > 32:
        v.add(field, "must be at most 32 characters", "TOO_LONG")
    elif not USERNAME.match(value):
        v.add(
            field,
            "must be 3 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit",
            "INVALID_FORMAT",
        )
    return value, value.lower()


def email(v: Violations, value: str, field: str = "email") -> tuple[str, str]:
    """The normalised address and its case-insensitive key."""
    if not value:
        v.add(field, "is required", "REQUIRED")
        return value, value
    if len(value) > MAX_EMAIL:
        v.add(field, f"must be at most {MAX_EMAIL} characters", "TOO_LONG")
        return value, value
    try:
        normalised = validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        v.add(field, f"is not a valid email address ({exc})", "INVALID_FORMAT")
        return value, value
    return normalised, normalised.lower()


def name(v: Violations, value: str, field: str = "name") -> str:
    return required_text(v, field, value, MAX_NAME)


def password(
    v: Violations, value: str, *, field: str = "password", forbidden: tuple[str, ...] = ()
) -> str:
    """Length 10 to 256, not a common password, not containing the username or email."""
    if not value:
        v.add(field, "is required", "REQUIRED")
    elif len(value) < MIN_PASSWORD:
        v.add(field, f"must be at least {MIN_PASSWORD} characters", "PASSWORD_TOO_SHORT")
    elif len(value) > MAX_PASSWORD:
        v.add(field, f"must be at most {MAX_PASSWORD} characters", "TOO_LONG")
    elif value.lower() in _COMMON_PASSWORDS or len(set(value)) < 4:
        v.add(field, "is too easy to guess", "PASSWORD_TOO_WEAK")
    elif any(part and len(part) >= 3 and part.lower() in value.lower() for part in forbidden):
        v.add(field, "must not contain your username or email", "PASSWORD_TOO_WEAK")
    return value


def date_of_birth(
    v: Violations, year: int, month: int, day: int, today: dt.date, field: str = "date_of_birth"
) -> dt.date | None:
    if (year, month, day) == (0, 0, 0):
        v.add(field, "is required", "REQUIRED")
        return None
    try:
        born = dt.date(year, month, day)
    except ValueError:
        v.add(field, "is not a calendar date", "INVALID_DATE")
        return None
    if born > today:
        v.add(field, "is in the future", "DATE_IN_FUTURE")
        return None
    if born.year < 1900:
        v.add(field, "is not plausible (before 1900)", "DATE_IMPLAUSIBLE")
        return None
    return born


def age_on(born: dt.date, today: dt.date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def picture(v: Violations, data: bytes, field: str = "profile_picture") -> str | None:
    """The MIME type of a PNG or JPEG picture; None when empty or invalid."""
    if not data:
        return None
    if len(data) > MAX_PICTURE_BYTES:
        v.add(field, f"must be at most {MAX_PICTURE_BYTES} bytes", "TOO_LARGE")
        return None
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    v.add(field, "must be a PNG or JPEG image", "UNSUPPORTED_IMAGE")
    return None


def request_id(v: Violations, value: str, field: str = "request_id") -> str:
    if not value:
        v.add(field, "is required so that a retry cannot create a second account", "REQUIRED")
    elif not _REQUEST_ID.match(value):
        v.add(field, "must be 8 to 64 letters, digits or '-' (a UUID)", "INVALID_FORMAT")
    return value


def optional_text(v: Violations, field: str, value: str, max_len: int) -> str:
    text = value.strip()
    if len(text) > max_len:
        v.add(field, f"must be at most {max_len} characters", "TOO_LONG")
    elif _has_control(text):
        v.add(field, "must not contain control characters", "INVALID_CHARACTERS")
    return text


def guardian_email(
    v: Violations, value: str, *, is_child: bool, age_of_consent: int, own_email_key: str
) -> str | None:
    """A guardian's address: required under the age of digital consent, refused above it,
    and never the person's own (ACC-3)."""
    if not is_child:
        if value:
            v.add(
                "guardian_email",
                f"is only collected under the age of {age_of_consent}",
                "NOT_COLLECTED",
            )
        return None
    if not value:
        v.add(
            "guardian_email",
            f"is required under the age of {age_of_consent}",
            "GUARDIAN_EMAIL_REQUIRED",
        )
        return None
    address, key = email(v, value, "guardian_email")
    if key == own_email_key:
        v.add("guardian_email", "must be the guardian's own address", "SAME_AS_EMAIL")
    return address
