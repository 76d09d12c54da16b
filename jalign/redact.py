"""Keep secrets out of everything jalign writes: error texts, failure rows, metrics, logs, cards.

Secrets come from the environment only (API keys, HF_TOKEN) or hide in URLs
(`https://user:pass@host`). A server may echo a key back in an error message, so every text that
leaves a process passes through `redact`.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from urllib.parse import unquote, urlparse

# Environment variables whose values are always secrets, plus any name a role's `api_key_env` adds.
SECRET_ENV = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY")
_registered: set[str] = set(SECRET_ENV)
_values: set[str] = set()  # secret values seen in URLs (user:pass, its Basic-auth base64, the password)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/@\s:]+(?::[^/@\s]*)?)@")
MASK = "***"


def register(env_name: str) -> None:
    """Treat the value of `env_name` as a secret from now on (a role's api_key_env)."""
    _registered.add(env_name)


def register_value(value: str) -> None:
    """Treat `value` itself as a secret: an API key handed to a process that cannot read the variable
    it came from (a Ray worker on another node)."""
    _values.add(value)


def register_url(url: str | None) -> None:
    """Treat the credentials in `url` (https://user:pass@host) as secrets: the raw text, the password, and
    the base64 an HTTP client sends as Basic auth (a server may echo that header back)."""
    parsed = urlparse(url or "")
    if parsed.username is None and parsed.password is None:
        return
    user, password = unquote(parsed.username or ""), unquote(parsed.password or "")
    userinfo = f"{user}:{password}"
    _values.update({userinfo, password, base64.b64encode(userinfo.encode()).decode()})


def secret_values() -> list[str]:
    # Very short values would mask ordinary words; real keys are long.
    values = {os.environ.get(name, "") for name in _registered} | _values
    return sorted((v for v in values if len(v) >= 8), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with URL credentials and the values of secret environment variables masked."""
    if not text:
        return text
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    for value in secret_values():
        text = text.replace(value, MASK)
    return text


def redact_url(url: str | None) -> str | None:
    return None if url is None else _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", url)


class RedactingFilter(logging.Filter):
    """Masks secrets in every log record (message and arguments rendered first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True
