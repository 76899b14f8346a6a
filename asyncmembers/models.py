"""Typed models for Instance Members, and the package's own cattrs converter.

Attributes are snake_case; the wire form is camelCase. Parsing is tolerant the way an API
client must be: unknown fields (``_links``, ``_embedded``, properties added later) are
ignored, and a role the client does not know yet is kept as a plain string.

Input is normalised in one place, :class:`InstanceMemberPost`: surrounding whitespace is
stripped from ``email``, ``userId`` and ``role``, and ``role`` is lower-cased, so
``" Admin "`` means ``admin``. Email letter case is kept as given (the API compares emails
case-insensitively).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

from . import _schema
from .errors import ValidationError

__all__ = [
    "InstanceMember",
    "InstanceMemberPatch",
    "InstanceMemberPost",
    "InstanceMembers",
    "MemberLike",
    "Role",
    "SupportsMemberPost",
    "converter",
    "get_converter",
    "structure",
]


class Role(enum.StrEnum):
    """An instance member's role."""

    ADMIN = "admin"
    VIEW = "view"


def _role_or_str(value: str) -> Role | str:
    try:
        return Role(value)
    except ValueError:
        return value  # a role added to the API after this client was built


def _norm(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _norm_role(value: object) -> object:
    if isinstance(value, Role):
        return value
    return value.strip().lower() if isinstance(value, str) else value


#: The roles by wire value: a dict lookup where ``Role(value)`` goes through the enum
#: machinery (about 0.6 µs a row).
_ROLE_BY_VALUE: dict[str, Role] = {role.value: role for role in Role}


def _to_role(value: object) -> Role:
    return Role(_schema.check_choice(_norm_role(value), "role", _schema.ROLES))


def _opt_email(value: object) -> str | None:
    value = _norm(value)
    return None if value is None or value == "" else _schema.check_email(value)


def _opt_user_id(value: object) -> str | None:
    value = _norm(value)
    return None if value is None or value == "" else _schema.check_object_id(value, "userId")


@attrs.frozen(slots=True)
class InstanceMemberPost:
    """A member to add: a ``role`` and an ``email`` or a ``user_id``.

    Validated on construction against the Instance Member Post schema; an invalid value
    raises :class:`~asyncmembers.errors.ValidationError` naming the field.
    """

    role: Role = attrs.field(converter=_to_role)
    email: str | None = attrs.field(default=None, converter=_opt_email)
    user_id: str | None = attrs.field(default=None, converter=_opt_user_id)

    def __attrs_post_init__(self) -> None:
        if self.email is None and self.user_id is None:
            raise ValidationError("member needs an email or a userId", field="email")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> InstanceMemberPost:
        """Build from wire form (``userId``) or attribute form (``user_id``).

        Any other key is an error, as in the API's schema (``additionalProperties: false``).
        """
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"member must be a mapping with role and email or userId, got {type(data).__name__}"
            )
        role = email = user_id = None
        for key, value in data.items():
            if key == "role":
                role = value
            elif key == "email":
                email = value
            elif key == "userId" or key == "user_id":
                user_id = value
            else:
                raise ValidationError(
                    f"member has unknown field {key!r}; allowed fields are email, userId, role",
                    field=str(key),
                )
        if role is None:
            raise ValidationError("member is missing role (admin or view)", field="role")
        return cls(role=role, email=email, user_id=user_id)

    @classmethod
    def coerce(cls, member: MemberLike) -> InstanceMemberPost:
        """Return ``member`` as an :class:`InstanceMemberPost`.

        Accepts an :class:`InstanceMemberPost`, a mapping in wire or attribute form, or any
        object with a ``to_member_post()`` method (such as a row read from a file, which
        knows its line number and puts it in the error).
        """
        if type(member) is dict:
            return cls._from_dict(member)
        if isinstance(member, InstanceMemberPost):
            return member
        if isinstance(member, Mapping):
            return cls.from_mapping(member)
        to_post = getattr(member, "to_member_post", None)
        if to_post is None:
            raise ValidationError(
                f"member must be an InstanceMemberPost or a mapping, got {type(member).__name__}"
            )
        result = to_post()
        if not isinstance(result, InstanceMemberPost):
            raise ValidationError("to_member_post() must return an InstanceMemberPost")
        return result

    def to_dict(self) -> dict[str, str]:
        """The wire form (``{"email"|"userId", "role"}``), ready for JSON."""
        return self.to_wire()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceMemberPost:
        """Build from wire form (or attribute form), validating as the API does."""
        return cls.from_mapping(data)

    @classmethod
    def _from_dict(cls, data: dict[Any, Any]) -> InstanceMemberPost:
        """:meth:`from_mapping` for a plain dict, the importer's common row, checked directly.

        The same rules in the same order with the same messages (``tests/test_models.py``
        compares both paths over the fuzz corpus), without the attrs converter chain and
        the enum call: about 2.4 µs less per row (paired, in-process).
        """
        role = email = user_id = None
        for key, value in data.items():
            if key == "role":
                role = value
            elif key == "email":
                email = value
            elif key == "userId" or key == "user_id":
                user_id = value
            else:
                raise ValidationError(
                    f"member has unknown field {key!r}; allowed fields are email, userId, role",
                    field=str(key),
                )
        if role is None:
            raise ValidationError("member is missing role (admin or view)", field="role")
        # An exact wire value is the common case; anything else takes the normalising path.
        checked_role = _ROLE_BY_VALUE.get(role) if type(role) is str else None
        if checked_role is None:
            checked_role = _to_role(role)
        if email is not None:
            email = _opt_email(email)
        if user_id is not None:
            user_id = _opt_user_id(user_id)
        if email is None and user_id is None:
            raise ValidationError("member needs an email or a userId", field="email")
        post = _new_post(cls)
        _set_slot(post, "role", checked_role)
        _set_slot(post, "email", email)
        _set_slot(post, "user_id", user_id)
        return post

    def to_wire(self) -> dict[str, str]:
        """The JSON body the API expects."""
        body: dict[str, str] = {}
        if self.email is not None:
            body["email"] = self.email
        if self.user_id is not None:
            body["userId"] = self.user_id
        body["role"] = self.role.value
        return body


# A frozen attrs instance built without its __init__ (whose converters _from_dict has
# already applied): object's own __new__ and __setattr__, as attrs' generated code does.
_new_post: Callable[[type[InstanceMemberPost]], InstanceMemberPost] = object.__new__
_set_slot: Callable[[object, str, object], None] = object.__setattr__


@attrs.frozen(slots=True)
class InstanceMemberPatch:
    """A change to one member: its new ``role`` (the API's Instance Member Patch).

    Validated on construction; the wire form is ``{"role": ...}`` and nothing else
    (``additionalProperties: false``).
    """

    role: Role = attrs.field(converter=_to_role)

    @classmethod
    def coerce(cls, member: InstanceMemberPatch | Mapping[str, Any]) -> InstanceMemberPatch:
        """Return ``member`` (an :class:`InstanceMemberPatch` or ``{"role": ...}``) as one."""
        if isinstance(member, InstanceMemberPatch):
            return member
        if not isinstance(member, Mapping):
            raise ValidationError(
                f"member must be an InstanceMemberPatch or a mapping such as "
                f'{{"role": "admin"}}, got {type(member).__name__}'
            )
        for key in member:
            if key != "role":
                raise ValidationError(
                    f"member has unknown field {key!r}; a change may only set role",
                    field=str(key),
                )
        if "role" not in member:
            raise ValidationError("member is missing role (admin or view)", field="role")
        return cls(role=member["role"])

    def to_wire(self) -> dict[str, str]:
        """The JSON body the API expects."""
        return {"role": self.role.value}

    def to_dict(self) -> dict[str, str]:
        """The wire form (``{"role": ...}``), ready for JSON."""
        return self.to_wire()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceMemberPatch:
        """Build from ``{"role": ...}``, validating as the API does."""
        return cls.coerce(data)


@attrs.frozen(slots=True)
class InstanceMember:
    """A member of a Losant instance, as the API returns it. Every field is optional."""

    instance_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    role: Role | str | None = None
    avatar_url: str | None = None
    two_factor_auth_enabled: bool | None = None
    sso_linked: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase keys, unset fields left out), ready for JSON."""
        data: dict[str, Any] = get_converter().unstructure(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceMember:
        """Parse the wire form as the client does (unknown fields ignored).

        Raises ``ValidationError`` when ``data`` is not an Instance Member.
        """
        return structure(data, cls)


@attrs.frozen(slots=True)
class InstanceMembers:
    """A page of instance members with the sort and filter settings the server applied."""

    items: list[InstanceMember] = attrs.field(factory=list)
    count: int | None = None
    instance_id: str | None = None
    sort_field: str | None = None
    sort_direction: str | None = None
    filter_field: str | None = None
    filter: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase keys, unset fields left out), ready for JSON."""
        data: dict[str, Any] = get_converter().unstructure(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceMembers:
        """Parse the wire form as the client does (unknown fields ignored).

        Raises ``ValidationError`` when ``data`` is not Instance Members.
        """
        return structure(data, cls)


class SupportsMemberPost(Protocol):
    """An input row that knows how to become a validated member (e.g. a row of a file)."""

    def to_member_post(self) -> InstanceMemberPost: ...


#: What the client and the importer accept as a member to add.
MemberLike = InstanceMemberPost | Mapping[str, Any] | SupportsMemberPost


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _require(kind: type, label: str, hook: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Refuse a value of the wrong JSON kind (cattrs would iterate a string as a list)."""

    def structure(value: Any, type_: Any) -> Any:
        if not isinstance(value, kind):
            raise TypeError(f"expected {label}, got {type(value).__name__}")
        return hook(value, type_)

    return structure


@functools.cache
def get_converter() -> cattrs.Converter:
    """The package's cattrs converter, built on first use (never the global one).

    Built lazily, and cattrs imported with it, so importing the package costs neither:
    ``bulk_import`` and ``add_raw`` never structure models.
    """
    import cattrs
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    conv = cattrs.Converter(omit_if_default=False)
    role_type: Any = Role | str | None
    conv.register_structure_hook_func(
        lambda t: t == role_type,
        lambda v, _: None if v is None else _role_or_str(str(v)),
    )
    for cls in (InstanceMember, InstanceMembers):
        renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}
        conv.register_structure_hook(
            cls,
            _require(Mapping, "an object", make_dict_structure_fn(cls, conv, **renames)),  # type: ignore[arg-type]
        )
        conv.register_unstructure_hook(
            cls,
            make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **renames),  # type: ignore[arg-type]
        )
    item_list = conv.get_structure_hook(list[InstanceMember])
    member_list: Any = list[InstanceMember]
    conv.register_structure_hook_func(
        lambda t: t == member_list, _require(list, "an array", item_list)
    )
    conv.register_unstructure_hook(Role, lambda r: r.value)
    conv.register_structure_hook(
        InstanceMemberPost, lambda v, _: InstanceMemberPost.from_mapping(v)
    )
    conv.register_unstructure_hook(InstanceMemberPost, InstanceMemberPost.to_wire)
    return conv


_T = TypeVar("_T")


def structure(data: Any, cls: type[_T]) -> _T:
    """``data`` (wire form) as ``cls``; ``ValidationError`` if it is not one."""
    conv = get_converter()
    import cattrs  # already imported by get_converter: a dict lookup

    try:
        return conv.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, AttributeError) as exc:
        raise ValidationError(
            f"not the wire form of {cls.__name__}: {repr(data)[:80]} ({exc})"
        ) from exc


if TYPE_CHECKING:
    import cattrs

    #: The package's converter (:func:`get_converter`), as a module attribute.
    converter: cattrs.Converter


def __getattr__(name: str) -> Any:
    # ``models.converter`` is built on first access (PEP 562), not at import.
    if name == "converter":
        return get_converter()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
