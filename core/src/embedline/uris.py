"""URIs for display: credentials written inside a URI never reach a message or an output.

A pipeline file may hold a server URI with a password or token in it
(``uri = "http://root:${MILVUS_TOKEN}@host:19530"``); only options a plugin marks secret are kept
as :class:`~embedline.contracts.Secret`, so every place that shows a URI passes it through
:func:`redact_uri` (exported by :mod:`embedline.toolkit` for plugins).  Pure standard library.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"

#: Query parameters whose value is a credential (compared in lower case, ``-`` read as ``_``).
SECRET_PARAMS = frozenset(
    {
        "token", "access_token", "refresh_token", "id_token", "auth", "auth_token", "authorization",
        "password", "passwd", "pwd", "secret", "client_secret", "key", "api_key", "apikey",
        "sig", "signature", "credential", "credentials", "x_amz_signature", "x_amz_credential",
        "x_amz_security_token",
    }
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
#: A URI inside free text (an error message from a client library, say).
_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]*[^\s'\"<>.,;:)\]]")


def _secret_param(name: str) -> bool:
    return name.strip().lower().replace("-", "_") in SECRET_PARAMS


def redact_uri(uri: str) -> str:
    """``uri`` with its credentials replaced by ``***``: the password of ``user:password@`` (a
    user name alone, which may itself be a token, as a whole) and the values of token-like query
    parameters (``token``, ``api_key``, ``sig``, ...).  Anything that is not a ``scheme://`` URI,
    or holds no credential, comes back unchanged::

        redact_uri("http://root:s3cret@host:19530?token=abc&db=x")
        # 'http://root:***@host:19530?token=***&db=x'
    """
    if not isinstance(uri, str) or not _SCHEME.match(uri):
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:  # a malformed URI (an unclosed "[", say): hide everything after the scheme
        return uri.split("://", 1)[0] + "://" + REDACTED
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if _secret_param(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_uris_in(text: str) -> str:
    """``text`` with every ``scheme://`` URI in it passed through :func:`redact_uri`."""
    if not isinstance(text, str) or "://" not in text:
        return text
    return _IN_TEXT.sub(lambda m: redact_uri(m.group(0)), text)
