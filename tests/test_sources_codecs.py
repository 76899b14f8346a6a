"""An encoding that is no text codec is a SourceError naming it, whatever the file holds."""

from __future__ import annotations

import io

import pytest

from asyncmembers.sources import SourceError, open_source


@pytest.mark.parametrize(
    ("encoding", "problem"),
    [
        ("rot13", "is not a text encoding"),
        ("hex", "is not a text encoding"),
        ("base64", "is not a text encoding"),
        ("no-such-codec", "unknown encoding"),
    ],
)
@pytest.mark.parametrize("bom", [b"", b"\xff\xfe"])
def test_a_codec_that_is_not_a_text_encoding_is_refused(
    encoding: str, problem: str, bom: bytes
) -> None:
    data = bom + "email,role\na@example.com,view\n".encode("utf-16-le" if bom else "utf-8")
    with pytest.raises(SourceError, match=f"{problem}.*{encoding}|{encoding}.*{problem}"):
        open_source(io.BytesIO(data), encoding=encoding)
