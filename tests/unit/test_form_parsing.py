"""authgate.security parses urlencoded forms itself: the result must be exactly
webob's (cgi.FieldStorage), byte for byte, for every body a client can send."""

from __future__ import annotations

import pytest
from webob import Request

from authgate.security import _parse_urlencoded

BODIES = [
    b"", b"a=1&b=2", b"a=&b", b"a=1&a=2&a=3", b"=x&y=", b"&&a=1&&",
    b"a+b=c+d", b"k=%E2%9C%93&x=%ZZ", b"a=%ff%fe&x=\xff\xfe", b"k=1;z=2",
    b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=abc",
    "n=caf\u00e9&m=\u2603".encode(), b"a=%00b", b"only-a-name",
]


def _request(body: bytes) -> Request:
    return Request.blank("/", method="POST", body=body,
                         content_type="application/x-www-form-urlencoded")


@pytest.mark.parametrize("body", BODIES)
def test_same_fields_as_webob(body):
    expected = _request(body)
    ours = _request(body)
    _parse_urlencoded(ours)
    assert list(ours.POST.items()) == list(expected.POST.items())
    # The body is still there for anything that reads it raw.
    assert ours.body == body
