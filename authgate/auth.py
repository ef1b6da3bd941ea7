"""The ordered chain of authentication sources chosen in the ini file."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from authgate.interfaces import AuthContext, AuthRejected, IAuthSource, Identity

log = logging.getLogger(__name__)

GENERIC_FAILURE = "Invalid username or password"


class AuthChain:
    def __init__(self, sources: Sequence[IAuthSource]):
        self.sources = list(sources)

    def authenticate(self, username: str, password: str, ctx: AuthContext) -> Identity:
        """Try each source in order; raise AuthRejected when none accepts."""
        for source in self.sources:
            identity = source.authenticate(username, password, ctx)
            if identity is not None:
                return identity
        raise AuthRejected(GENERIC_FAILURE, reason="no source recognised the user")
