"""Customer identity per project: the normalised phone number is what makes a visit, a call and a channel report
of the same person meet (OWN-01, OWN-12).

- ``normalize_phone``: full-width digits → ASCII; spaces, dashes, dots and brackets dropped; the country code
  (+86, 0086, 86) removed. Mobiles must be 11 digits ``1[3-9]xxxxxxxxx``; landlines keep their trunk ``0`` and
  area code (``021 1234 5678`` → ``02112345678``). A local landline without an area code is accepted only when
  the caller supplies the office's area code.
- ``normalize_name``: the form used to compare a 报备 name with the visit register (OWN-12).
- ``customer_key``: a stable id per (project, phone): an HMAC under the deployment's secret, so Kafka keys, logs
  and the event log that analytics reads carry no phone number, and the key cannot be turned back into one by
  trying every number (as a plain digest could: phone numbers are enumerable). ``CustomerKeys`` holds the secret.
- ``mask_phone``: ``138****0000`` for logs and metrics.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "CustomerKeys",
    "InvalidPhone",
    "PhoneKind",
    "customer_key",
    "mask_phone",
    "normalize_name",
    "normalize_phone",
    "phone_hash",
    "phone_kind",
]

KEY_VERSION = "v2"  # part of the digest input: bump it only with a re-keying migration (v1: unkeyed SHA-256)

_SEPARATORS = re.compile(r"[\s\-().·/]+")
_MOBILE = re.compile(r"1[3-9]\d{9}")
_LANDLINE = re.compile(r"0[1-9]\d{8,10}")  # 0 + area code (2-3 digits) + local number (7-8 digits): 10-12 digits
_LOCAL_LANDLINE = re.compile(r"[2-9]\d{6,7}")
_AREA_CODE = re.compile(r"0[1-9]\d{1,2}")
_NAME_DOTS = re.compile(r"[・•‧∙⋅]")  # the middle dots of transliterated names, unified to "·"


class InvalidPhone(ValueError):
    """Not a Chinese mobile or landline number. The message never repeats the number (it would reach logs)."""


class PhoneKind(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"


def _digits(raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw).strip()  # full-width digits, ＋ and － become ASCII
    text = _SEPARATORS.sub("", text)
    if text.startswith("+"):
        text = "00" + text[1:]
    if not text.isascii() or not text.isdigit():
        raise InvalidPhone("phone number has characters other than digits, spaces, dashes, brackets or a leading +")
    return text


def normalize_phone(raw: str, default_area_code: str | None = None) -> str:
    """The canonical digits of a Chinese phone number: ``13800000000`` or ``02112345678``.

    ``default_area_code`` (e.g. ``"021"``) completes a local landline written without one; without it such a
    number is refused, because the same 8 digits are different lines in different cities.
    """
    digits = _digits(raw)
    international = False
    for prefix in ("0086", "86"):
        rest = digits[len(prefix) :]
        # "86" alone is a prefix only in front of a complete mobile or area-coded number, never of a local one.
        if digits.startswith(prefix) and (prefix == "0086" or _MOBILE.fullmatch(rest) or len(rest) >= 10):
            digits, international = rest, True
            break
    if international and digits[:1] in "23456789":
        digits = "0" + digits  # +86 21 1234 5678: the trunk 0 is dropped in international format
    if _MOBILE.fullmatch(digits):
        return digits
    if _LANDLINE.fullmatch(digits):
        return digits
    if not international and default_area_code is not None and _LOCAL_LANDLINE.fullmatch(digits):
        area = _digits(default_area_code)
        if not _AREA_CODE.fullmatch(area):
            raise InvalidPhone("default_area_code must be 0 followed by 2-3 digits")
        return area + digits
    raise InvalidPhone(f"not an 11-digit mobile (1[3-9]…) or an area-coded landline ({len(digits)} digits)")


def phone_kind(phone: str) -> PhoneKind:
    """Mobile or landline, for a number ``normalize_phone`` accepts."""
    return PhoneKind.MOBILE if normalize_phone(phone).startswith("1") else PhoneKind.LANDLINE


def normalize_name(name: str) -> str:
    """The form two registrations of one name share: NFKC, no whitespace, one kind of middle dot, case-folded."""
    text = unicodedata.normalize("NFKC", name)
    text = _NAME_DOTS.sub("·", text)
    return "".join(text.split()).casefold()


def customer_key(project_id: str, phone: str, secret: bytes) -> str:
    """The customer's stable id in ``project_id``: ``<project_id>:<32 hex digits>``.

    Any spelling of the same number gives the same key; the same number in two projects gives two keys
    (ownership is per project, rules.md §13.26); another ``secret`` gives other keys.
    """
    project = project_id.strip()
    if not project:
        raise ValueError("project_id must not be empty")
    if not secret:
        raise ValueError("customer keys need a non-empty secret")
    message = f"anchang-customer-{KEY_VERSION}\0{project}\0{normalize_phone(phone)}".encode()
    return f"{project}:{hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]}"


@dataclass(frozen=True)
class CustomerKeys:
    """``customer_key`` under one deployment's secret (Settings.customer_keys gives it)."""

    secret: bytes = field(repr=False)

    def key(self, project_id: str, phone: str) -> str:
        return customer_key(project_id, phone, self.secret)


def mask_phone(phone: str) -> str:
    """``138****0000``: the first three and last four digits of a mobile, the area code and last four digits of a
    landline. Anything that is not a valid number masks to ``****``, so a typo never leaks into a log."""
    try:
        digits = normalize_phone(phone)
    except InvalidPhone:
        return "****"
    if digits.startswith("1"):
        return f"{digits[:3]}****{digits[-4:]}"
    area = 3 if digits[1] in "12" else 4  # 010, 02x are three digits long; other area codes four
    return f"{digits[:area]}{'*' * (len(digits) - area - 4)}{digits[-4:]}"


def phone_hash(phone: str, salt: str | bytes) -> str:
    """HMAC-SHA256 of the normalised number under ``salt``: a stable join key for analytics beyond the office.

    With a secret salt the hash cannot be reversed by enumerating the ~10^10 possible numbers; rotating the salt
    breaks joins with older extracts, by design.
    """
    key = salt.encode() if isinstance(salt, str) else salt
    if not key:
        raise ValueError("phone_hash needs a non-empty secret salt")
    return hmac.new(key, normalize_phone(phone).encode(), hashlib.sha256).hexdigest()
