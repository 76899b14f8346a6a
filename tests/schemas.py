"""JSON Schemas (draft-07) of the API's answers, written from SPEC section 1.

Used to check every body the embedded server sends. ``INSTANCE_MEMBER`` does not forbid
additional properties: a real server adds ``_links`` and may add new fields. (``format:
uri`` is only enforced when jsonschema's optional URI checker is installed.)
"""

from __future__ import annotations

from typing import Any, Final

import jsonschema

OBJECT_ID: Final[dict[str, Any]] = {"type": "string", "pattern": "^[A-Fa-f\\d]{24}$"}

INSTANCE_MEMBER_POST: Final[dict[str, Any]] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Instance Member Post",
    "type": "object",
    "properties": {
        "userId": OBJECT_ID,
        "email": {"type": "string", "format": "email", "maxLength": 1024},
        "role": {"type": "string", "enum": ["admin", "view"]},
    },
    "additionalProperties": False,
    "anyOf": [{"required": ["email", "role"]}, {"required": ["userId", "role"]}],
}

INSTANCE_MEMBER: Final[dict[str, Any]] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Instance Member",
    "type": "object",
    "properties": {
        "instanceId": OBJECT_ID,
        "userId": OBJECT_ID,
        "email": {"type": "string", "format": "email", "maxLength": 1024},
        "firstName": {"type": "string", "minLength": 1, "maxLength": 1024},
        "lastName": {"type": "string", "maxLength": 1024},
        "role": {"type": "string", "enum": ["admin", "view"]},
        "avatarUrl": {"type": "string", "format": "uri", "maxLength": 1024},
        "twoFactorAuthEnabled": {"type": "boolean"},
        "ssoLinked": {"type": "boolean"},
    },
}

INSTANCE_MEMBERS: Final[dict[str, Any]] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Instance Members",
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": INSTANCE_MEMBER},
        "instanceId": OBJECT_ID,
        "count": {"type": "integer"},
        "filter": {"type": "string"},
        "filterField": {"type": "string"},
        "sortField": {"type": "string"},
        "sortDirection": {"type": "string", "enum": ["asc", "desc", "ASC", "DESC", ""]},
    },
}

INSTANCE_MEMBER_PATCH: Final[dict[str, Any]] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Instance Member Patch",
    "type": "object",
    "properties": {"role": {"type": "string", "enum": ["admin", "view"]}},
    "additionalProperties": False,
    "required": ["role"],
}

SUCCESS: Final[dict[str, Any]] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Success",
    "type": "object",
    "properties": {"success": {"type": "boolean", "enum": [True]}},
    "required": ["success"],
}

ERROR: Final[dict[str, Any]] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Error",
    "type": "object",
    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
    "required": ["type", "message"],
}

_CHECKER = jsonschema.Draft7Validator.FORMAT_CHECKER


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` matches ``schema`` (with formats)."""
    jsonschema.Draft7Validator(schema, format_checker=_CHECKER).validate(instance)
