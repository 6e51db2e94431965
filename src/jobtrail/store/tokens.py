"""TokenStore: API tokens — created once, looked up by hash on every request, revoked."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from jobtrail.exceptions import InvalidOwner, TokenExists
from jobtrail.store.database import Database
from jobtrail.store.statements import Statements
from jobtrail.store.tables import tokens


@dataclass(frozen=True, slots=True)
class Token:
    """A token's record; ``owner`` None means an admin token that sees every job."""

    name: str
    owner: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def admin(self) -> bool:
        """Whether this token sees and acts on every owner's jobs."""
        return self.owner is None


def hash_token(secret: str) -> str:
    """The stored form of a token: tokens are long random strings, so SHA-256 suffices."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


class TokenStore:
    """Tokens in the store, so every server process sees a new or revoked token at once."""

    def __init__(self, database: Database, statements: Statements) -> None:
        self._db = database
        self._statements = statements

    def create(self, name: str, owner: str | None) -> str:
        """Create a token and return its secret (shown once, stored only as a hash).

        Raises ``InvalidOwner`` for an owner that is empty or blank: a token is an owner's
        (scoped everywhere) or an admin's (``owner`` None), never something in between.
        """
        if owner is not None and not owner.strip():
            raise InvalidOwner(owner)
        secret = "jt_" + secrets.token_urlsafe(32)
        row = {
            "name": name,
            "token_hash": hash_token(secret),
            "owner": owner,
            "created_at": self._db.clock(),
        }
        with self._db.write() as conn:
            if conn.execute(sa.select(tokens.c.name).where(tokens.c.name == name)).first():
                raise TokenExists(name)
            conn.execute(tokens.insert().values(row))
        return secret

    def find(self, secret: str) -> Token | None:
        """The live token with this secret, or None (unknown or revoked)."""
        # Every API request asks this, so it runs as a prepared statement.
        with self._db.raw(write=None) as session:
            rows = session.execute(self._statements.token, {"token_hash": hash_token(secret)})
        return Token(**rows[0]) if rows else None

    def list_all(self) -> list[Token]:
        """Every token, live and revoked, by name."""
        stmt = sa.select(tokens.c.name, tokens.c.owner, tokens.c.created_at, tokens.c.revoked_at)
        with self._db.read() as conn:
            return [Token(**r._mapping) for r in conn.execute(stmt.order_by(tokens.c.name))]

    def revoke(self, name: str) -> bool:
        """Revoke a token by name; False if there is no live token of that name."""
        stmt = (
            tokens.update()
            .where(tokens.c.name == name, tokens.c.revoked_at.is_(None))
            .values(revoked_at=self._db.clock())
        )
        with self._db.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)
