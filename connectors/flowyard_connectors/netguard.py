"""Which network addresses an HTTP target may reach.

A flow author writes a URL; without a guard that URL could point the runtime at the
metadata service of the cloud it runs in, at the store's database or at anything else on
the private network. So the host is resolved first and every address it resolves to is
checked: public addresses pass; loopback, private, link-local, multicast and reserved
ones are refused unless a configured allowlist names their network. The request is then
pinned to the address that was checked (the `Host` header and TLS server name stay the
original host name), so a second DNS answer cannot swap in another address, and every
redirect goes through the same check.

The allowlist is the union of the target's `allow_networks` option and the
comma-separated `FLOWYARD_HTTP_ALLOW_NETWORKS` environment variable (for an operator who
wants, say, the plant network allowed for every flow).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from flowyard.errors import DeliveryError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ENV_ALLOW = "FLOWYARD_HTTP_ALLOW_NETWORKS"


def parse_networks(items: Iterable[str]) -> list[Network]:
    """'10.20.0.0/16', '127.0.0.1' (a single address) or 'loopback'/'private' shorthands."""
    networks: list[Network] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        if item == "loopback":
            networks += [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
        elif item == "private":
            networks += [
                ipaddress.ip_network(n)
                for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
            ]
        else:
            networks.append(ipaddress.ip_network(item, strict=False))
    return networks


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class AddressGuard:
    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_options(cls, allow_networks: Iterable[str]) -> AddressGuard:
        env = os.environ.get(ENV_ALLOW, "").split(",")
        return cls(tuple(parse_networks([*allow_networks, *env])))

    def permits(self, address: Address) -> bool:
        if any(address in network for network in self.allowed):
            return True
        return is_public(address)

    async def resolve(self, host: str, port: int) -> str:
        """The first permitted address of `host`; refuses the host when any address it
        resolves to is not permitted (a name with one public and one private address is
        a classic way around a guard that checks only the first)."""
        try:
            literal: Address | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise DeliveryError(
                    f"cannot resolve host {host!r}: {exc.strerror}", retryable=True
                ) from exc
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        refused = [a for a in addresses if not self.permits(a)]
        if refused or not addresses:
            raise DeliveryError(
                f"host {host!r} resolves to {', '.join(map(str, refused or addresses))}, which is "
                "a loopback, private or reserved address; add its network to the target's "
                f"allow_networks (or {ENV_ALLOW}) if this flow may reach it",
                retryable=False,
            )
        return str(addresses[0])
