"""``treadle.http``: an HTTP/1.1 client on treadle's streams, with keep-alive pooling.

Needs the ``http`` extra (``pip install treadle[http]``), which brings the httptools
parser. Everything here is re-exported from ``client`` and ``connection``.
"""

from __future__ import annotations

from treadle.errors import (
    ConnectError,
    HTTPError,
    InvalidURL,
    ProtocolError,
    ReadTimeout,
    RemoteDisconnected,
    ResponseTooLarge,
    TooManyRedirects,
)
from treadle.http.client import DEFAULT_MAX_BODY_SIZE, DEFAULT_USER_AGENT, Client
from treadle.http.connection import Headers, Response

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_USER_AGENT",
    "Client",
    "ConnectError",
    "HTTPError",
    "Headers",
    "InvalidURL",
    "ProtocolError",
    "ReadTimeout",
    "RemoteDisconnected",
    "Response",
    "ResponseTooLarge",
    "TooManyRedirects",
]
