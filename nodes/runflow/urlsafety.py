"""Where the client may send requests: the API base URL rule and the storage (upload/result) URL rule.

API base URL: ``https://`` to any host, or ``http://`` to a loopback host only (a local sandbox). Plain http to a
remote host would send the key in clear text, so it is refused.

Storage URLs (presigned upload PUTs, result downloads; never carry the key) come from the API's answers, so a
hostile or broken API could point them anywhere (blind SSRF into the user's LAN or the machine itself). They must
be ``https://`` to a host whose every resolved address is public, unless the API itself is a loopback sandbox: then
they must be on that sandbox's own port on loopback (or public https). Redirects are never followed (see transport.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from . import errors as E

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` spells literally (IPv6 brackets and zone ids allowed), else None."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def is_loopback_host(host: str | None) -> bool:
    """A loopback name or literal (127.0.0.0/8, ::1, localhost). Names are not resolved: only these literals."""
    if not host:
        return False
    host = host.lower()
    if host in LOOPBACK_NAMES:
        return True
    ip = ip_of(host)
    return bool(ip and ip.is_loopback)


def is_public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    ip = mapped or ip
    return ip.is_global and not ip.is_multicast and not ip.is_reserved and not ip.is_loopback


def is_sandbox_url(url: str) -> bool:
    """An ``http(s)://`` URL on a loopback host: a local sandbox, never Runflow itself."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname)


def check_api_url(url: str, name: str = "RUNFLOW_API_URL") -> str:
    """``url`` if it may carry an API key: https anywhere, or http on loopback. Else ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise E.ConfigError(f"{name} must be an http(s) URL like https://api.runflow.io, got {url[:80]!r}")
    if parts.username or parts.password:
        raise E.ConfigError(f"{name} must not contain a user name or password; the API key is sent as a header")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise E.ConfigError(f"{name} {url[:80]!r} is plain http to a remote host: the API key would travel "
                            "unencrypted. Use https://, or http:// only for a sandbox on 127.0.0.1/localhost.")
    return url


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class StoragePolicy:
    """Checks one storage URL before any byte is sent to it (see the module docstring)."""

    def __init__(self, api_base_url: str):
        self.api_origin = origin(api_base_url)
        self.sandbox = is_sandbox_url(api_base_url)

    async def check(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            scheme, host, port = origin(url)
        except ValueError:
            raise E.ResultError("Runflow sent a malformed storage URL; refusing to fetch it. Try again later.") \
                from None
        if self.sandbox and (scheme, port) == (self.api_origin[0], self.api_origin[2]) and is_loopback_host(host):
            return  # the local sandbox's own storage (127.0.0.1 or localhost: same server, same port)
        where = f"{scheme}://{host}" if host else "(no host)"
        if scheme != "https" or not host:
            raise E.ResultError(f"refusing a storage URL on {where}: only https:// storage is used with "
                                "Runflow's API (is RUNFLOW_API_URL right?). Nothing was sent to it.")
        if parts.username or parts.password:
            raise E.ResultError(f"refusing a storage URL with credentials in it ({where}). Nothing was sent to it.")
        addresses = await resolve(host, port or 443)
        private = sorted({str(ip) for ip in addresses if not is_public_ip(ip)})
        if private or not addresses:
            raise E.ResultError(f"refusing a storage URL on {where}: it points at a private, loopback or reserved "
                                f"address ({', '.join(private[:3]) or 'unresolvable'}), not at Runflow's storage. "
                                "Nothing was sent to it; check RUNFLOW_API_URL and any proxy/DNS settings.")


async def resolve(host: str, port: int) -> list:
    """Every address ``host`` resolves to (an IP literal is its own answer)."""
    ip = ip_of(host)
    if ip is not None:
        return [ip]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise E.ConnectError(f"cannot resolve the storage host {host!r}; check your network/DNS, then re-queue.") \
            from None
    out = []
    for info in infos:
        parsed = ip_of(str(info[4][0]))
        if parsed is not None:
            out.append(parsed)
    return out
