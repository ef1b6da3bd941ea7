"""First start on an empty database: the admin user and the default client."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from authgate.models import OAuthClient, User
from authgate.services.passwords import generate_password, hash_password

log = logging.getLogger("authgate.seed")

DEFAULT_CLIENT_NAME = "AuthGate CLI"


@dataclass
class SeedResult:
    admin_created: bool = False
    admin_password: str | None = None  # only when generated
    client_id: str | None = None
    credentials_file: str | None = None


def seed(dbsession: Session, *, admin_password: str, credentials_file: str) -> SeedResult:
    """Create what an empty database needs; never creates anything twice."""
    result = SeedResult()
    admin = dbsession.scalars(select(User).where(User.username == "admin")).first()
    if dbsession.scalar(select(func.count()).select_from(User)) == 0:
        generated = not admin_password.strip()
        password = generate_password() if generated else admin_password.strip()
        admin = User(username="admin", email="admin@localhost", role="admin",
                     full_name="Administrator", password_hash=hash_password(password),
                     is_active=True, auth_source="local")
        dbsession.add(admin)
        dbsession.flush()
        result.admin_created = True
        result.admin_password = password if generated else None
        log.info("Created default user: admin (role: admin)")

    if dbsession.scalar(select(func.count()).select_from(OAuthClient)) == 0:
        client = OAuthClient(
            client_id=str(uuid.uuid4()), name=DEFAULT_CLIENT_NAME,
            description="Default CLI client for the device authorization flow",
            user_id=admin.id if admin else "", created_by=admin.id if admin else "",
            scopes="email profile", client_type="public",
            enable_device_flow=True, enable_auth_code_flow=True,
            enable_client_credentials_flow=False, status="active", token_profile="standard",
        )
        client.redirect_uris = ["http://localhost:8888/callback"]
        client.refresh_grant_types()
        dbsession.add(client)
        dbsession.flush()
        result.client_id = client.client_id
        log.info("Seeded OAuth client with ID: %s", client.client_id)

    if result.admin_created or result.client_id:
        result.credentials_file = write_credentials(credentials_file, result)
    return result


def write_credentials(path: str, result: SeedResult) -> str | None:
    lines = []
    if result.admin_password:
        lines += ["Admin Username: admin", f"Admin Password: {result.admin_password}", ""]
    if result.client_id:
        lines += [f"Client ID: {result.client_id}",
                  "Client Type: public (device flow and authorization code + PKCE)"]
    if not lines:
        return None
    try:
        # O_EXCL: never overwrite a file a previous run wrote.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        log.warning("Credentials file already exists (from a previous run), skipping write: %s",
                    path)
        if result.admin_password:
            log.warning("The generated admin password could not be saved; reset it with "
                        "`authgate create-user admin --password ... --reset`")
        return None
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    log.info("Initial credentials written to: %s (mode 0600)", os.path.abspath(path))
    log.warning("Read and delete this file after first login!")
    return path
