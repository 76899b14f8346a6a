"""The Instance Members schema rules, in one place.

The models, the resource argument checks and the embedded server all validate with these
functions, so the client and the fake agree on what the real API accepts. Each check
raises :class:`~asyncmembers.errors.ValidationError` with the offending field named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from .errors import ValidationError

OBJECT_ID_RE: Final = re.compile(r"[A-Fa-f0-9]{24}")
MAX_EMAIL_LENGTH: Final = 1024
ROLES: Final = ("admin", "view")
SORT_FIELDS: Final = ("email", "role")
SORT_DIRECTIONS: Final = ("asc", "desc")
FILTER_FIELDS: Final = ("email", "role")
POST_FIELDS: Final = ("email", "userId", "role")

# A pragmatic reading of JSON Schema's "format: email" (RFC 5321 mailbox): one "@", a local
# part without whitespace, control characters or the specials that need quoting, and a
# domain of two or more dot-separated labels of letters, digits and inner hyphens (unicode
# letters allowed, so internationalised addresses pass).
_LOCAL = r"[^\s@\"(),:;<>\[\\\]\x00-\x1f\x7f]+"
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
EMAIL_RE: Final = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})+")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_object_id(value: object, field: str) -> str:
    """Return ``value`` if it is a 24-hex-digit ObjectId, else raise naming ``field``."""
    if not isinstance(value, str) or OBJECT_ID_RE.fullmatch(value) is None:
        raise ValidationError(
            f"{field} must be a 24-character hexadecimal ObjectId, got {_show(value)}",
            field=field,
        )
    return value


def check_email(value: object, field: str = "email") -> str:
    """Return ``value`` if it is a well-formed email of at most 1024 characters."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {_show(value)}", field=field)
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValidationError(
            f"{field} is {len(value)} characters long; the limit is {MAX_EMAIL_LENGTH}",
            field=field,
        )
    plain = value.isascii()
    if not plain:
        _check_visible(value, field)
    if EMAIL_RE.fullmatch(value) is None:
        raise ValidationError(f"{field} is not a valid email address: {_show(value)}", field=field)
    if not plain and not _is_utf8(value):
        # A lone surrogate (e.g. from a "\ud800" escape in JSON) passes the pattern but
        # cannot be sent as UTF-8 or stored by the API.
        raise ValidationError(
            f"{field} holds a character that is not valid UTF-8: {_show(value)}", field=field
        )
    return value


def _check_visible(value: str, field: str) -> None:
    """Refuse an invisible format character (a zero-width space, a soft hyphen, a
    direction mark: copied from a web page or a document): ``\u200bann@example.com``
    passed the pattern and added a second member beside ann@example.com."""
    import unicodedata

    for position, char in enumerate(value, start=1):
        if unicodedata.category(char) == "Cf":
            name = unicodedata.name(char, "a format character")
            raise ValidationError(
                f"{field} holds an invisible character (U+{ord(char):04X} {name}) at "
                f"character {position}: {_show(value)}; delete it",
                field=field,
            )


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_header_safe(value: str) -> bool:
    """True when ``value`` has no control characters and is valid UTF-8."""
    return _CONTROL.search(value) is None and _is_utf8(value)


def check_header_value(value: object, field: str) -> str | None:
    """Return ``value`` (``None`` or a string) if it can be sent as an HTTP header value.

    Line breaks and other control characters are refused (they would split the header),
    and so are characters that are not valid UTF-8.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {type(value).__name__}", field=field)
    if not is_header_safe(value):
        raise ValidationError(
            f"{field} must not hold line breaks, control characters or invalid UTF-8, "
            f"got {_show(value)}",
            field=field,
        )
    return value


def check_choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(choices)
        raise ValidationError(f"{field} must be one of {allowed}; got {_show(value)}", field=field)
    return value


def check_member_post(body: object) -> dict[str, str]:
    """Validate a wire-form Instance Member Post body strictly, as the API does.

    The body must be an object with only ``email``, ``userId`` and ``role``, a valid
    ``role``, and an ``email`` or a ``userId`` (not neither).
    """
    if not isinstance(body, Mapping):
        raise ValidationError(
            f"member must be an object with role and email or userId, got {_show(body)}"
        )
    extra = [k for k in body if k not in POST_FIELDS]
    if extra:
        raise ValidationError(
            f"member has unknown field {extra[0]!r}; allowed fields are email, userId, role",
            field=str(extra[0]),
        )
    out: dict[str, str] = {}
    if "role" not in body:
        raise ValidationError("member is missing role (admin or view)", field="role")
    out["role"] = check_choice(body["role"], "role", ROLES)
    if "email" not in body and "userId" not in body:
        raise ValidationError("member needs an email or a userId", field="email")
    if "email" in body:
        out["email"] = check_email(body["email"])
    if "userId" in body:
        out["userId"] = check_object_id(body["userId"], "userId")
    return out


def check_list_query(sort_field: Any, sort_direction: Any, filter_field: Any) -> None:
    """Validate the list endpoint's enumerated query values; ``None`` means absent."""
    if sort_field is not None:
        check_choice(sort_field, "sortField", SORT_FIELDS)
    if sort_direction is not None:
        check_choice(sort_direction, "sortDirection", SORT_DIRECTIONS)
    if filter_field is not None and filter_field != "":
        check_choice(filter_field, "filterField", FILTER_FIELDS)
