"""A row of a member file, the column alias table, and how a header maps to member fields."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from ..errors import ValidationError
from ..models import InstanceMemberPost, Role

__all__ = [
    "COLUMN_ALIASES",
    "ColumnMap",
    "SourceError",
    "SourceRow",
    "check_default_role",
    "map_columns",
    "normalise",
]

MEMBER_FIELDS: Final = ("email", "userId", "role")

#: Header names (CSV) and keys (JSON) recognised for each member field, in order of
#: preference. Names match after ignoring letter case, spaces, ``_``, ``-`` and ``.``. When
#: a file has several (Okta's ``email`` and ``login``, Azure AD's ``mail`` and
#: ``userPrincipalName``), the first one listed is used, and a row whose cell there is blank
#: takes the next one's value.
COLUMN_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "email": (
        "email",  # Auth0, Okta, this tool's own files
        "Email Address [Required]",  # Google Workspace bulk-user CSV
        "Email Address",
        "Primary Email",  # Google Workspace user list
        "primaryEmail",  # Google Admin SDK, Okta profile
        "mail",  # Azure AD / Entra ID
        "login",  # Okta
        "userPrincipalName",  # Azure AD / Entra ID
    ),
    # ``user_id`` matches too (normalised). Auth0 exports a ``user_id`` such as
    # ``auth0|6450f1...``: a value with ``|`` is an identity provider's id, never a Losant
    # userId, and is treated as absent.
    "userId": ("userId", "Losant User ID"),
    "role": ("role", "Member Role", "Instance Role", "Losant Role"),
}

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_BYTE: Final = re.compile("[\udc80-\udcff]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_IGNORED: Final = re.compile(r"[\s_\-.]+")


def normalise(name: str) -> str:
    """A header name as the alias table compares it: no case, spaces, ``_``, ``-``, ``.``."""
    return _IGNORED.sub("", name.casefold())


_ALIAS_RANK: Final[Mapping[str, tuple[str, int]]] = {
    normalise(alias): (field, rank)
    for field, aliases in COLUMN_ALIASES.items()
    for rank, alias in enumerate(aliases)
}


class SourceError(ValidationError):
    """A member file that cannot be read at all, or past some point.

    The message is one line naming the file and, where there is one, the line (or the
    JSON array element); ``line`` holds that line number (or ``None``).
    """

    def __init__(self, message: str, *, line: int | None = None) -> None:
        # One line always: a header cell or a file name may hold a line break.
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))
        self.line = line


def show(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_json(value: object) -> str:
    """``value`` as JSON, cut to 60 characters."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _unguard(value: str) -> str:
    """Undo the error report's formula guard: ``'=x`` reads as ``=x``."""
    if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
        return value[1:]
    return value


def escape_bytes(text: str) -> str:
    """Undecodable bytes (kept as lone surrogates) written as ``\\xNN``."""
    return _ESCAPED_BYTE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)


def check_default_role(role: str | None) -> str | None:
    """The default role, checked (``admin`` or ``view``, any case), or ``None``."""
    if role is None:
        return None
    wanted = role.strip().lower()
    if wanted not in {r.value for r in Role}:
        raise ValidationError(
            f"default_role must be admin or view, got {role!r}", field="default_role"
        )
    return wanted


@attrs.frozen(slots=True)
class ColumnMap:
    """Which column (CSV) or key (JSON) holds each member field, found once per header.

    ``keys`` names the column used for ``email``, ``userId`` and ``role``; ``fallbacks``
    the further alias columns whose value is taken when the first one's cell is blank;
    ``default_role`` fills a missing or blank role.
    """

    keys: Mapping[str, str] = attrs.field(factory=dict)
    fallbacks: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    default_role: str | None = None
    problem: str | None = None
    problem_field: str | None = None


def map_columns(
    names: Iterable[str],
    *,
    overrides: Mapping[str, str | None],
    default_role: str | None,
) -> ColumnMap:
    """Map header names (or an object's keys) to member fields through the alias table.

    ``overrides`` maps a member field to the name the caller gave for it (``email_column``
    ...); such a field uses that column only. An ambiguity (two columns of one alias, such
    as ``userId`` and ``user_id``) is reported in ``problem``.
    """
    keys: dict[str, str] = {}
    fallbacks: dict[str, tuple[str, ...]] = {}
    problem: str | None = None
    problem_field: str | None = None
    wanted = {field: normalise(name) for field, name in overrides.items() if name is not None}
    found: dict[str, list[tuple[int, str]]] = {}
    by_norm: dict[str, str] = {}
    for name in names:
        norm = normalise(name)
        for field, want in wanted.items():
            if norm == want and field not in keys:
                keys[field] = name
        hit = _ALIAS_RANK.get(norm)
        if hit is None or hit[0] in wanted:
            continue
        if norm in by_norm and problem is None:
            problem = f"has both {by_norm[norm]!r} and {name!r}, which both mean {hit[0]}"
            problem_field = hit[0]
        by_norm.setdefault(norm, name)
        found.setdefault(hit[0], []).append((hit[1], name))
    for field, hits in found.items():
        ordered = [name for _, name in sorted(hits, key=lambda h: h[0])]
        keys[field] = ordered[0]
        if len(ordered) > 1:
            fallbacks[field] = tuple(ordered[1:])
    return ColumnMap(keys, fallbacks, default_role, problem, problem_field)


@attrs.frozen(slots=True, repr=False)
class SourceRow:
    """One data row of a member file: where it is, what it holds, how to make it a member.

    ``line`` is the 1-based line where the row starts (``None`` for a JSON array element,
    whose 0-based position in the array is ``element``); ``index`` its 0-based position
    among data rows; ``fields`` every original column (CSV) or key (JSON) as read (bytes
    that did not decode are kept as lone surrogates, see :func:`escape_bytes`); ``columns``
    the CSV header (``None`` for JSON); ``keys`` maps ``email``, ``userId`` and ``role`` to
    the ``fields`` key that holds each; ``problem`` is set when the reader already knows the
    row is bad (wrong cell count, invalid JSON, ...).
    """

    line: int | None
    index: int
    fields: dict[str, Any] = attrs.field(hash=False)
    keys: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    columns: tuple[str, ...] | None = None
    problem: str | None = None
    problem_field: str | None = None
    fallbacks: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, hash=False)
    default_role: str | None = None
    element: int | None = None

    @property
    def where(self) -> str:
        """``line 7``, or ``element 3`` for a JSON array element (0-based, as jq counts)."""
        if self.line is None and self.element is not None:
            return f"element {self.element}"
        return f"line {self.line}"

    def _value(self, name: str) -> str | None:
        key = self.keys.get(name)
        if key is None:
            return None
        candidates: Sequence[str] = (key, *self.fallbacks.get(name, ()))
        for key in candidates:
            if key not in self.fields:
                continue
            value = self.fields[key]
            if not isinstance(value, str):
                raise ValidationError(
                    f"{self.where}: {name} must be a string, got {show_json(value)}", field=name
                )
            if self.columns is not None:
                value = _unguard(value)
            if _SURROGATE.search(value) is not None:
                if _ESCAPED_BYTE.search(value) is not None:
                    what = (
                        f"holds bytes that are not valid in the file's encoding: "
                        f"{show(escape_bytes(value))}; pass the file's encoding "
                        "(e.g. encoding='cp1252') or save it as UTF-8"
                    )
                else:
                    what = f"holds a character that is not valid UTF-8: {show(value)}"
                raise ValidationError(f"{self.where}: {name} {what}", field=name)
            value = value.strip()
            if name == "userId" and "|" in value:
                continue  # an Auth0-style "provider|id", not a Losant userId
            if value:
                return value
        return None

    def to_member_post(self) -> InstanceMemberPost:
        """Build the member; raise ``ValidationError`` ("line N: what") naming the field."""
        if self.problem is not None:
            raise ValidationError(f"{self.where}: {self.problem}", field=self.problem_field)
        email = self._value("email")
        user_id = self._value("userId")
        role = self._value("role") or self.default_role
        if role is None:
            raise ValidationError(
                f"{self.where}: role is missing; give admin or view", field="role"
            )
        if email is None and user_id is None:
            raise ValidationError(
                f"{self.where}: the row needs an email or a userId", field="email"
            )
        try:
            return InstanceMemberPost(role=role, email=email, user_id=user_id)
        except ValidationError as exc:
            raise ValidationError(f"{self.where}: {exc.message}", field=exc.field) from exc

    def _summary(self) -> str:
        parts = []
        for name in MEMBER_FIELDS:
            key = self.keys.get(name)
            if key is not None and key in self.fields:
                parts.append(f"{name}={show(self.fields[key], 40)}")
        return self.where + (": " + " ".join(parts) if parts else "")

    def __str__(self) -> str:
        return self._summary()

    def __repr__(self) -> str:
        return f"SourceRow({self._summary()})"
