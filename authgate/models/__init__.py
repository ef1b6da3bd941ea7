"""The data model; the core owns the schema for every SQL store."""

from authgate.models.audit import AuditLog
from authgate.models.authorization import AuthorizationCode, UserAuthorization
from authgate.models.client import OAuthClient
from authgate.models.connection import OAuthConnection
from authgate.models.device import DeviceCode
from authgate.models.meta import Base, new_uuid, utcnow
from authgate.models.token import Token
from authgate.models.user import User

__all__ = [
    "AuditLog", "AuthorizationCode", "Base", "DeviceCode", "OAuthClient", "OAuthConnection",
    "Token", "User", "UserAuthorization", "new_uuid", "utcnow",
]
