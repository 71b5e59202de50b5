"""Bearer-token authentication from a static token file, and the authorization seam.

The token file has kube-apiserver's ``--token-auth-file`` format: CSV lines
``token,user,uid,"group1,group2"``. Authorization is behind the `Authorizer` protocol;
the server's is `antrea.testbed.apiserver.authz.Authorization` (Node + RBAC).
"""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    uid: str = ""
    groups: tuple[str, ...] = field(default=())
    # Extra attributes (a bound ServiceAccount token's node name, as TokenReview reports it).
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class RequestAttributes:
    """What is being asked, in the terms an authorizer decides on."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


class Authorizer(Protocol):
    def authorize(self, identity: Identity, attrs: RequestAttributes) -> bool: ...


class AllowAuthenticated:
    """Every authenticated identity may do anything (for tests that need no authorization)."""

    def authorize(self, identity: Identity, attrs: RequestAttributes) -> bool:
        return AUTHENTICATED in identity.groups


def parse_token_csv(text: str) -> dict[str, Identity]:
    """Parse a static token file; blank lines and ``#`` comments are skipped."""
    tokens: dict[str, Identity] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2:
            raise ValueError(f"token file line needs at least token,user: {row!r}")
        token, user = row[0].strip(), row[1].strip()
        uid = row[2].strip() if len(row) > 2 else ""
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        tokens[token] = Identity(user=user, uid=uid, groups=groups)
    return tokens


def format_token_line(token: str, identity: Identity) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [token, identity.user, identity.uid, ",".join(identity.groups)]
    )
    return buf.getvalue()


def new_token() -> str:
    return secrets.token_hex(16)


class TokenAuthenticator:
    """Maps bearer tokens to identities; tokens can be added at run time (the lab does)."""

    def __init__(self, tokens: dict[str, Identity] | None = None) -> None:
        self._tokens: dict[str, Identity] = dict(tokens or {})

    @classmethod
    def from_file(cls, path: Path) -> TokenAuthenticator:
        return cls(parse_token_csv(path.read_text()))

    def add(self, token: str, identity: Identity) -> None:
        self._tokens[token] = identity

    def authenticate_token(self, token: str) -> Identity | None:
        ident = self._tokens.get(token)
        if ident is None:
            return None
        if AUTHENTICATED in ident.groups:
            return ident
        return Identity(
            user=ident.user,
            uid=ident.uid,
            groups=(*ident.groups, AUTHENTICATED),
            extra=ident.extra,
        )

    def authenticate_header(self, header: str | None) -> Identity | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return self.authenticate_token(value.strip())

    def first_token_of_group(self, group: str) -> str | None:
        for token, ident in self._tokens.items():
            if group in ident.groups:
                return token
        return None
