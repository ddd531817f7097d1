"""Secrets kept out of messages, logs and reprs: the one place that masks URLs, keys and tokens.

`mask_url` hides a URL's password (and secret query parameters such as `?password=`) but keeps
the scheme, user, host and path, so that an error still says where it went. `redact` does that
for every URL inside a text, and also hides bearer tokens, `api_key: ...`-style values and any
given secret (say, the configured API key), even when a server echoes only part of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

_URL_START = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)(.*)$", re.DOTALL)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s<>\"]+")
_SECRET_NAMES = (
    r"password|passwd|pwd|sslpassword|secret|client_secret|token|access_token|auth_token|"
    r"api[-_]?key|x-api-key|apikey|auth|authorization|key|sig|signature"
)
_SECRET_QUERY = re.compile(rf"([?&;](?:{_SECRET_NAMES})=)[^&#;]*", re.IGNORECASE)
_BEARER = re.compile(r"\b(bearer)\s+[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE)
# `"api_key": "value"`, `x-api-key: value`, `password=value`: the value goes. No space after `=`,
# so advice such as "pass api_key= to ..." is left alone.
_NAMED_VALUE = re.compile(
    r"(?i)\b((?:x-)?api[-_]?key|authorization|access[-_]token|auth[-_]token|password|client[-_]secret)"
    r"(\"?'?\s*:\s*\"?'?|=)(?![\s()\"'])([^\s\"',;&)]+)"
)
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=]{8,}")
#: Shorter secrets are matched only whole: a part of a few characters would hide ordinary words.
_MIN_PART = 8


def mask_url(url: str) -> str:
    """`url` with its password and secret query values replaced by `***`.

    `redis://:secret@host:6379/0` -> `redis://:***@host:6379/0`,
    `postgresql://ada:pw@db/app?sslpassword=x` -> `postgresql://ada:***@db/app?sslpassword=***`.
    Text that is not a URL is returned unchanged.
    """
    match = _URL_START.match(url)
    if match is None:
        return url
    scheme, rest = match.groups()
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:cut], rest[cut:]
    # The password may hold '/' or '@' (unescaped): the host starts after the last '@'.
    at = head.rfind("@")
    if at > 0 and not head.startswith("/"):
        user, colon, _password = head[:at].partition(":")
        if colon:
            head = f"{user}:{MASK}{head[at:]}"
    return scheme + head + _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, tail)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with URL passwords, bearer tokens, named secret values and each of `secrets` masked.

    A secret is hidden wherever it appears, and so is any run of 8 or more of its characters
    (a server that echoes a truncated key), unless the secret itself is shorter than that.
    """
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    known = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    parts = [s for s in known if len(s) >= _MIN_PART]
    if parts:
        text = _TOKEN.sub(lambda m: MASK if _part_of_any(m.group(0), parts) else m.group(0), text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _NAMED_VALUE.sub(lambda m: m.group(1) + m.group(2) + MASK, text)


def _part_of_any(token: str, secrets: list[str]) -> bool:
    # A run of the secret's own characters: the key, or a truncated echo of it.
    return any(token in secret for secret in secrets)
