"""Client lookup and authentication (RFC 6749 §2.3)."""

from __future__ import annotations

import logging

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from authgate.db import CLIENT_CACHE_KEY
from authgate.models import OAuthClient
from authgate.services.errors import OAuthError, invalid_client
from authgate.services.secrets import hash_client_secret, is_legacy, verify_client_secret

log = logging.getLogger(__name__)

# Verified when the client is unknown, so timing does not reveal which ids exist.
_DUMMY_HASH = hash_client_secret("dummy-secret-for-timing")


# Built once: constructing a select() costs about a third of running it.
BY_CLIENT_ID = select(OAuthClient).where(OAuthClient.client_id == bindparam("client_id"))

_SEEN = "authgate.clients"  # Session.info key: clients this session has loaded


def get_client(db: Session, client_id: str) -> OAuthClient | None:
    """The client with ``client_id``, or None.

    Loaded once per session: a second lookup of the same client in one request
    (the token endpoint checks "is it public?" and then authenticates) returns
    the object already found, as the ORM's identity map would after a second
    SELECT anyway, without running that SELECT.

    A client from the cross-request cache (:mod:`authgate.clientcache`) is its
    detached snapshot, shared by every request: read it, never change it (to
    change a client, load it with a SELECT, as the admin services do).  Attaching
    a copy to the session (``Session.merge``) cost ~8 % of a device poll.
    """
    if not client_id or len(client_id) > 64:
        return None
    seen = db.info.setdefault(_SEEN, {})
    found = seen.get(client_id)
    if found is not None:
        client, shared = found
        if shared or client in db:
            return client
    cache = db.info.get(CLIENT_CACHE_KEY)  # authgate.clientcache: None in bare sessions
    cached = cache.get(client_id) if cache is not None else None
    if cached is not None:
        seen[client_id] = (cached, True)
        return cached
    generation = cache.generation if cache is not None else 0
    client = db.scalars(BY_CLIENT_ID, {"client_id": client_id}).first()
    if client is not None and cache is not None:
        cache.put(client, generation)
    if client is not None:
        seen[client_id] = (client, False)
    return client


def authenticate(db: Session, client_id: str, client_secret: str | None, *,
                 basic: bool) -> OAuthClient:
    """Return the client, checking the secret of confidential clients.

    A public client identifies itself by ``client_id`` alone; a confidential
    client must present its secret (Basic or form).  Unknown client ->
    ``invalid_client`` "Client not found".
    """
    client = get_client(db, client_id)
    if client is None:
        verify_client_secret(_DUMMY_HASH, client_secret or "")
        raise invalid_client("Client not found", basic=basic)
    if client.is_public:
        if client_secret and client.client_secret_hash and not verify_client_secret(
                client.client_secret_hash, client_secret):
            raise invalid_client("Client authentication failed", basic=basic)
        return client
    if not client_secret:
        raise invalid_client("Client authentication required: send client_secret "
                             "(HTTP Basic or form)", basic=True)
    if not verify_client_secret(client.client_secret_hash, client_secret):
        raise invalid_client("Client authentication failed", basic=True)
    if is_legacy(client.client_secret_hash):
        # An imported bcrypt hash: store the fast form from now on.  A statement,
        # not an attribute change: the object may be the cache's shared snapshot
        # (the UPDATE empties the cache, authgate.clientcache.watch_writes).
        db.execute(update(OAuthClient).where(OAuthClient.id == client.id)
                   .values(client_secret_hash=hash_client_secret(client_secret))
                   .execution_options(synchronize_session=False))
        log.info("client %s: secret re-stored as salted HMAC-SHA256", client.client_id)
    return client


def require_active(client: OAuthClient) -> None:
    if not client.is_active:
        raise OAuthError("invalid_client", "Client is not active", 400)
