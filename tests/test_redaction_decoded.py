"""The token is masked in server JSON once decoded, whatever escapes spelled it."""

from __future__ import annotations

import aiohttp

from asyncmembers import _json
from asyncmembers._transport import Transport

TOKEN = "tok-DECODED-0123456789"


def transport() -> Transport:
    return Transport(
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=aiohttp.ClientTimeout(total=1),
        session=None,
        max_connections=1,
        max_response_bytes=1 << 20,
        secrets=(TOKEN,),
        max_retry_after=60.0,
    )


def escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def test_escaped_token_is_masked_in_values_keys_and_deep_nesting() -> None:
    t = transport()
    deep = "[" * 900 + f'"{escaped(TOKEN)}"' + "]" * 900
    raw = (
        '{"message": "x ' + escaped(TOKEN) + ' y", "' + escaped(TOKEN) + '": 1, '
        '"items": [{"email": "' + escaped(TOKEN) + '"}], "deep": ' + deep + "}"
    ).encode()
    value = t.loads(t.scrub(raw))
    assert TOKEN not in repr(value)
    assert value["message"] == "x *** y"
    assert value["***"] == 1
    assert value["items"] == [{"email": "***"}]
    node = value["deep"]
    for _ in range(900):
        node = node[0]
    assert node == "***"


def test_answers_without_escapes_are_returned_as_parsed() -> None:
    t = transport()
    raw = b'{"userId": "575ef90f7ae143cd83dc4aad", "role": "view", "n": [1, 2.5, null]}'
    assert t.loads(t.scrub(raw)) == _json.loads(raw)
    assert t.loads(b'"a \\" quote"') == 'a " quote'
