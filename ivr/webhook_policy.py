"""Where webhook steps may connect: the allow-list and the special address ranges (pure, stdlib only).

A flow is code written by a flow author, but its URLs are rendered from templates and its servers can
answer with redirects, so an IVR that fetches whatever it is told becomes a proxy into its own network
(the metrics page, a cloud metadata service, an admin port on loopback). Two rules, checked for every
hop and against the address actually connected to:

* ``IVR_WEBHOOK_ALLOW`` (when set) lists every place a webhook may go: host names (``api.example.com``),
  domain suffixes (``.example.com``: any subdomain) and addresses or networks (``10.1.2.3``,
  ``10.0.0.0/8``, ``fd00::/8``). A host matches by name, or by the address it resolves to.
* Addresses that are not public (loopback, link-local, private, shared, multicast, unspecified,
  documentation and other reserved ranges, also inside IPv4-mapped, 6to4 and NAT64 IPv6 addresses) are
  refused unless a network entry of the allow-list contains them, or, for private ranges only,
  ``IVR_WEBHOOK_ALLOW_PRIVATE`` is true. Loopback and link-local need an explicit entry on purpose.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10")
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # 0.0.0.0 reaches the local host on Linux
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, ``"private"``, ...), or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if any(ip in net for net in _PRIVATE):
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def parse_address(text: str) -> IPAddress | None:
    """An IP literal as aiohttp would connect to it (IPv6 zone dropped), or None if ``text`` is a name."""
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


def _normalise(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return host


@dataclass(frozen=True)
class WebhookPolicy:
    """A parsed allow-list plus the private-range switch. ``WebhookPolicy()`` is the safe default."""

    names: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    restricted: bool = False
    """True when an allow-list was given: then only what it lists is reachable."""
    allow_private: bool = False

    @classmethod
    def parse(cls, allow: str | None, *, allow_private: bool = False) -> WebhookPolicy:
        """From ``IVR_WEBHOOK_ALLOW``'s text; ``ValueError`` names a bad entry."""
        names: list[str] = []
        networks: list[IPNetwork] = []
        for raw in (allow or "").split(","):
            entry = raw.strip()
            if not entry:
                continue
            if "/" in entry or parse_address(entry) is not None:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"{entry!r} is not an address or network (e.g. 10.0.0.0/8)") from None
                continue
            name = _normalise(entry)
            label = name.removeprefix(".")
            if not label or any(c in label for c in ":@ ") or "*" in label:
                raise ValueError(f"{entry!r} is not a host name (use .example.com for subdomains)")
            names.append(name if not entry.startswith(".") else "." + label)
        return cls(tuple(names), tuple(networks), bool(names or networks), allow_private)

    def name_allowed(self, host: str) -> bool:
        """Whether ``host`` (a name) is listed; everything is when there is no allow-list."""
        if not self.restricted:
            return True
        host = _normalise(host)
        return any(host == n or (n.startswith(".") and host.endswith(n)) for n in self.names)

    def host_refusal(self, host: str) -> str | None:
        """Checked before any DNS: a name that no entry can allow (not by name, and no networks)."""
        if parse_address(host) is None and not self.name_allowed(host) and not self.networks:
            return f"host {host} is not in IVR_WEBHOOK_ALLOW"
        return None

    def refusal(self, host: str, ip: IPAddress) -> str | None:
        """Why connecting to ``ip`` for ``host`` is refused, or None when it is allowed."""
        candidates = [ip] + (
            [ip.ipv4_mapped] if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else []
        )
        if any(c in net for c in candidates for net in self.networks if c.version == net.version):
            return None
        literal = parse_address(host) is not None
        if self.restricted and (literal or not self.name_allowed(host)):
            where = host if literal else f"{host} ({ip})"
            return f"{where} is not in IVR_WEBHOOK_ALLOW"
        kind = address_kind(ip)
        if kind is None or (kind == "private" and self.allow_private):
            return None
        where = host if literal else f"{host} resolves to {ip}, which"
        how = f"a {ip}/{ip.max_prefixlen} entry in IVR_WEBHOOK_ALLOW"
        if kind == "private":
            how += " or IVR_WEBHOOK_ALLOW_PRIVATE=true"
        return f"{where} is a {kind} address (allow it with {how})"
