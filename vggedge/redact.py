"""The one place credentials are taken out of URIs before they are shown or logged.

``rtsp://admin:s3cret@cam/stream`` becomes ``rtsp://admin:***@cam/stream``, and
query parameters that carry secrets (``?token=...``, ``&password=...``,
``X-Amz-Signature=...``) keep their names but not their values. Every place a
source URI reaches a person or a file (messages, logs, the preview page,
``/metrics``, ``/api/state``, ``/events``, ``/healthz``, ``--json`` lines) shows
:func:`redact_uri` of it; only the code that opens the source sees the original.
"""
from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#\s]*)@")
#: a URI whose ``//`` a path join collapsed (``Path("http://u:p@h/x")`` prints ``http:/u:p@h/x``): user:password only
_COLLAPSED = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*:/)([^/?#\s:@]+):[^/?#\s]*@")
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:[a-z0-9_\-.]*(?:pass(?:word|wd)?|pwd|secret|token|key|sig(?:nature)?|"
                           r"auth|credential|session)[a-z0-9_\-.]*)=)[^&#;\s]*")


def redact_uri(text: object) -> str:
    """``text`` (a URI, or a message holding URIs) with passwords and secret query values replaced by ``***``."""
    text = str(text)

    def userinfo(match: re.Match) -> str:
        user, sep, _ = match.group(2).partition(":")
        return f"{match.group(1)}{user}:{MASK}@" if sep else f"{match.group(1)}{MASK}@"

    text = _COLLAPSED.sub(rf"\1\2:{MASK}@", _USERINFO.sub(userinfo, text))
    return _SECRET_PARAM.sub(rf"\1{MASK}", text)
