"""Phone numbers: parsed, validated and placed (region, time zone) with Google's libphonenumber (``phonenumbers``).

Written by hand it would be wrong: national prefixes, number lengths and the
zone of an area code change every year, and ``phonenumbers`` tracks them.
A number whose region spans several zones (e.g. a US toll-free number, a
Russian mobile) gets the first zone libphonenumber lists for it: callers who
know better give the lead's zone in its own column.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType, timezone

UNKNOWN_ZONE = "Etc/Unknown"


class NumberError(ValueError):
    """A phone number that cannot be dialed, with the reason in plain words."""


@dataclass(frozen=True)
class NumberInfo:
    """``e164`` (+8613812345678), ``region`` (ISO 3166 alpha-2, e.g. CN), ``tz`` (IANA zone), ``mobile``."""

    e164: str
    region: str
    tz: str
    mobile: bool


_PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "no country code (start it with + or set the import's default region)",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_LONG: "too long",
}


def normalize(raw: str, default_region: str = "") -> NumberInfo:
    """Parse ``raw`` (any common format; national ones need ``default_region``, e.g. ``US`` or ``CN``).

    Raises :class:`NumberError` for text that is no number or a number no operator would route.
    """
    text = str(raw).strip()
    if not text:
        raise NumberError("empty")
    try:
        parsed = phonenumbers.parse(text, default_region.upper() or None)
    except NumberParseException as err:
        raise NumberError(_PARSE_ERRORS.get(err.error_type, str(err))) from err
    if not phonenumbers.is_valid_number(parsed):
        raise NumberError("not a valid number for its region" if phonenumbers.is_possible_number(parsed) else "impossible length")
    zones = [z for z in timezone.time_zones_for_number(parsed) if z != UNKNOWN_ZONE]
    region = phonenumbers.region_code_for_number(parsed) or ""
    kind = phonenumbers.number_type(parsed)
    return NumberInfo(phonenumbers.format_number(parsed, PhoneNumberFormat.E164), region, zones[0] if zones else "UTC",
                      kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE))
