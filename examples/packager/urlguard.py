"""The SSRF guard: every URL the packager fetches must be on the configured API base, or it is refused."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote, urljoin, urlsplit

from examples.packager.errors import UnsafeUrlError
from tdm_messaging import ConfigurationError

__all__ = ["UrlGuard"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# Anything a parser might read differently from another (requests, urllib3, the server's):
# whitespace, control characters, backslashes and non-ASCII (IDN look-alikes) are refused outright.
_FORBIDDEN: Final = re.compile(r"[\x00-\x20\x7f-\U0010ffff\\]")
# A URL under the base with none of these after its origin is its own absolute form (see check's fast path).
_NOT_PLAIN: Final = re.compile(r"[?#;%]")


class UrlGuard:
    """Decides whether a URL may be fetched: same scheme, same host spelling, same port, under the base path.

    The host is compared as written, never resolved, so another spelling of an address
    (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``[::ffff:127.0.0.1]``) is another host and is
    refused, as are user-info tricks (``http://base@evil/``), scheme-relative links
    (``//evil/``), other schemes (``file:``, ``ftp:``, ``gopher:``), and dot segments
    (``/api/../admin``, also percent-encoded) that would leave the base path.

    Args:
        api_base: the API's base URL, e.g. ``http://127.0.0.1:8080`` or ``https://tdm.example/api-root/``.

    Raises:
        ConfigurationError: ``api_base`` is not a plain http(s) URL with a host.
    """

    def __init__(self, api_base: str) -> None:
        parts = urlsplit(api_base)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ConfigurationError(f"API base {api_base!r} must be an http:// or https:// URL with a host")
        if "@" in parts.netloc or parts.query or parts.fragment or _FORBIDDEN.search(api_base):
            raise ConfigurationError(
                f"API base {api_base!r} must have no user-info, query, fragment, spaces or non-ASCII characters"
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"API base {api_base!r} has an invalid port") from exc
        self._scheme = parts.scheme
        host = parts.netloc.lower().rsplit(":", 1)[0] if port is not None else parts.netloc.lower()
        default = _DEFAULT_PORTS[parts.scheme]
        effective = port if port is not None else default
        self._netlocs = frozenset({f"{host}:{effective}"} | ({host} if effective == default else set()))
        self._prefix = parts.path.rstrip("/") + "/"
        self.base = f"{parts.scheme}://{parts.netloc.lower()}{self._prefix}"
        # The fast path only where the slow one accepts the base's own host spelling ("h:08080" it does not).
        self._origin_length = len(parts.scheme) + 3 + len(parts.netloc)
        self._fast_base = self.base if parts.netloc.lower() in self._netlocs else None

    def check(self, url: str, *, relative_to: str | None = None) -> str:
        """Return ``url`` made absolute (against ``relative_to``, else the base) if it may be fetched.

        Args:
            url: the URL as found in a request, a page, or a ``Location`` header.
            relative_to: the URL of the page it came from (itself already checked).

        Returns:
            The absolute URL to fetch.

        Raises:
            UnsafeUrlError: naming the URL and the rule it breaks.
        """
        if not isinstance(url, str) or not url:
            raise UnsafeUrlError(f"refused URL {url!r}: not a non-empty string")
        if _FORBIDDEN.search(url):
            raise UnsafeUrlError(
                f"refused URL {url!r}: it contains whitespace, a control character, a backslash or non-ASCII"
            )
        # Fast path, the same answer for less (a listing's every link is checked, and again when
        # fetched): an absolute URL spelt with the base's own prefix, with no query, fragment,
        # parameters or escapes, resolves to itself, is on the base's host and under its path;
        # only its dot segments are left to refuse. Anything else takes the full check below.
        if (
            self._fast_base is not None
            and url.startswith(self._fast_base)
            and not _NOT_PLAIN.search(url, self._origin_length)
            and not any(seg in (".", "..") for seg in url[self._origin_length :].split("/"))
        ):
            return url
        return self._check(url, relative_to)

    def _check(self, url: str, relative_to: str | None) -> str:
        """The full check of ``url`` (a non-empty string with no forbidden character)."""
        absolute = urljoin(relative_to or self.base, url)
        parts = urlsplit(absolute)
        if parts.scheme != self._scheme:
            raise UnsafeUrlError(f"refused URL {url!r}: scheme {parts.scheme!r} is not the API's {self._scheme!r}")
        if "@" in parts.netloc:
            raise UnsafeUrlError(f"refused URL {url!r}: user-info ('@') is not allowed in the host part")
        if parts.netloc.lower() not in self._netlocs:
            raise UnsafeUrlError(
                f"refused URL {url!r}: host {parts.netloc!r} is not the configured API base {self.base!r}"
            )
        path = parts.path or "/"
        if not (path + "/").startswith(self._prefix) and path != self._prefix.rstrip("/"):
            raise UnsafeUrlError(f"refused URL {url!r}: path {path!r} is outside the API base {self.base!r}")
        for candidate in (urlsplit(url).path, path):
            if any(seg in (".", "..") for seg in unquote(candidate).split("/")):
                raise UnsafeUrlError(f"refused URL {url!r}: dot segments ('.', '..') are not allowed in the path")
        return absolute
