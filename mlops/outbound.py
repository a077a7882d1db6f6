"""The one policy for fetching a URI a user gave us over the network (SSRF: OWASP API Security Top 10, API7).

Only http(s). The host is resolved once and every address it resolves to must be outside the deny list (loopback,
private, link-local, metadata, CGNAT, multicast, reserved, and IPv6 forms that embed such an IPv4 address) unless
the operator allows it in OUTBOUND_ALLOWED_NETWORKS; the connection then goes to that checked address, with the
original Host header and TLS SNI/verification for the host name, so a second DNS answer cannot swap it. Redirects
are followed by hand, each hop checked again. Bodies are capped in size and time. A failure to connect, a timeout,
a reset or a TLS failure all read the same, so the error does not tell an open port from a closed one.

Operator-configured endpoints (platform, JWKS, Elasticsearch, S3) are trusted and do not come through here.
"""

import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager

import certifi
import httpx
from django.conf import settings

from mlops.exceptions import ApplicationError

SCHEMES = ("http", "https")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DENIED_IPV4 = [
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 included: Linux connects it to the local host
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",  # RFC 1918
        "100.64.0.0/10",  # CGNAT, and Alibaba's metadata service at 100.100.100.200
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, and the AWS/GCP/Azure metadata service at 169.254.169.254
        "192.0.0.0/24",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",  # IETF assignments, documentation
        "192.88.99.0/24",  # the 6to4 relay anycast
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, 255.255.255.255 included
    )
]
# IPv6 is allowed only inside global unicast (2000::/3); these are the non-public parts of it and the
# unique-local/link-local ranges named for the reader (fd00:ec2::254, AWS's IPv6 metadata service, is in fc00::/7).
_DENIED_IPV6 = [
    ipaddress.IPv6Network(network)
    for network in (
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32) included
        "2001:db8::/32",
        "3fff::/20",  # documentation
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # a NAT64 gateway in a VPC reaches the private IPv4 it embeds


class OutboundError(ApplicationError):
    """A user-given URI that could not be fetched: the caller's to fix, a 400 at request time or the job's error."""


class OutboundNotAllowed(OutboundError):
    """The URI, or a redirect from it, points at an address or scheme this deployment does not fetch from."""


def address_denied(address: IPAddress) -> bool:
    """Whether the deny list refuses `address`, before the operator's OUTBOUND_ALLOWED_NETWORKS are considered."""
    if isinstance(address, ipaddress.IPv4Address):
        return any(address in network for network in _DENIED_IPV4)
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address in _NAT64:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if embedded is not None:
        return address_denied(embedded)
    return address not in _GLOBAL_UNICAST or any(address in network for network in _DENIED_IPV6)


def address_allowed(address: IPAddress) -> bool:
    if any(address in network for network in settings.OUTBOUND_ALLOWED_NETWORKS):
        return True
    return not address_denied(address)


def uri_check(uri: str) -> None:
    """Refuse (OutboundError) an http(s) URI whose scheme or resolved addresses the policy does not allow; for a
    request to answer 400 at once rather than a job failing later."""
    named = f"'{uri}'"
    _allowed_addresses(_parse(uri, named=named), named=named)


@contextmanager
def fetch(uri: str) -> Iterator[Iterator[bytes]]:
    """The body of a 200 answer to GET `uri`, as chunks read as they are consumed, within the policy's limits."""
    deadline = time.monotonic() + settings.OUTBOUND_DEADLINE_SECONDS
    with httpx.Client(verify=_tls_context(settings.OUTBOUND_CA_BUNDLE), trust_env=False) as client:
        named = f"'{uri}'"
        url = _parse(uri, named=named)
        for _ in range(settings.OUTBOUND_MAX_REDIRECTS + 1):
            response = _get(client, url, named=named, original=uri, deadline=deadline)
            if not response.is_redirect:
                break
            response.close()
            location = response.headers["location"]
            named = f"'{uri}' redirects to '{location}', which"
            url = _parse(location, base=url, named=named)
        else:
            response.close()
            raise OutboundError(f"'{uri}' redirected more than {settings.OUTBOUND_MAX_REDIRECTS} times.")
        try:
            if response.status_code != 200:
                raise OutboundError(f"'{uri}' answered HTTP {response.status_code}.")
            if int(response.headers.get("content-length") or 0) > settings.OUTBOUND_MAX_BYTES:
                raise _too_large(uri)
            yield _body(response, uri=uri, deadline=deadline)
        finally:
            response.close()


def _parse(uri: str, *, named: str, base: httpx.URL | None = None) -> httpx.URL:
    """`uri` (relative to `base`, for a redirect) if it is an http(s) URL with a host; `named` says which URI it is
    in the error."""
    try:
        url = base.join(uri) if base else httpx.URL(uri)
    except httpx.InvalidURL:
        raise OutboundNotAllowed(f"{named} is not a valid URL.", _field("Not a valid URL.")) from None
    if url.scheme not in SCHEMES or not url.host:
        raise OutboundNotAllowed(
            f"{named} is not an http(s) URL with a host.", _field("Only http(s) URLs with a host are fetched.")
        )
    return url


def _allowed_addresses(url: httpx.URL, *, named: str) -> list[str]:
    """Every address the host resolves to, resolved this once, or OutboundNotAllowed if any is refused: one bad
    answer among good ones is how a rebinding attack would get in."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        answers = socket.getaddrinfo(url.raw_host.decode("ascii"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise OutboundError(
            f"{named} could not be fetched: its host name does not resolve.", _field("The host name does not resolve.")
        ) from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(answer[4][0].split("%")[0]) for answer in answers))
    if not all(address_allowed(address) for address in addresses):
        raise OutboundNotAllowed(
            f"{named} is not allowed: its address is not one this deployment may fetch from.",
            _field("Internal, private and reserved addresses are not fetched."),
        )
    return [str(address) for address in addresses]


def _get(client: httpx.Client, url: httpx.URL, *, named: str, original: str, deadline: float) -> httpx.Response:
    """GET `url` from the first of its checked addresses that connects, sending the host name as Host and SNI."""
    host = url.raw_host.decode("ascii")
    for address in _allowed_addresses(url, named=named):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _too_slow(original)
        timeout = httpx.Timeout(
            min(settings.OUTBOUND_READ_TIMEOUT_SECONDS, remaining),
            connect=min(settings.OUTBOUND_CONNECT_TIMEOUT_SECONDS, remaining),
        )
        request = client.build_request(
            "GET",
            url.copy_with(host=address),
            headers={"Host": url.netloc.decode("ascii")},
            timeout=timeout,
            extensions={"sni_hostname": host},
        )
        try:
            return client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            continue  # the next address of the same host may answer (an IPv6 route that is down)
        except httpx.TransportError:
            break
    raise _unreachable(original)


def _body(response: httpx.Response, *, uri: str, deadline: float) -> Iterator[bytes]:
    received = 0
    try:
        for chunk in response.iter_bytes():  # decoded: the cap also holds for a compressed bomb
            received += len(chunk)
            if received > settings.OUTBOUND_MAX_BYTES:
                raise _too_large(uri)
            if time.monotonic() > deadline:
                raise _too_slow(uri)
            yield chunk
    except httpx.HTTPError:
        raise _unreachable(uri) from None


@functools.cache
def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verification on, against OUTBOUND_CA_BUNDLE or certifi's roots (httpx's default), built once per bundle."""
    return ssl.create_default_context(cafile=ca_bundle or certifi.where())


def _unreachable(uri: str) -> OutboundError:
    # One message for refused, reset, timed out and TLS failures: telling them apart would map ports.
    return OutboundError(f"'{uri}' could not be fetched.")


def _too_large(uri: str) -> OutboundError:
    return OutboundError(f"'{uri}' is larger than the {settings.OUTBOUND_MAX_BYTES} bytes this deployment fetches.")


def _too_slow(uri: str) -> OutboundError:
    return OutboundError(
        f"'{uri}' took longer than the {settings.OUTBOUND_DEADLINE_SECONDS:g} seconds this deployment gives a download."
    )


def _field(problem: str) -> dict:
    return {"fields": {"uri": [problem]}}
