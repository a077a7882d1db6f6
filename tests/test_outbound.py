"""The outbound policy for user-given http(s) URIs, against real listeners on loopback. The suite keeps the
production deny list; a test that must reach its server allows that one address (127.0.0.1) by the setting."""

import ipaddress
import re
import socket
import traceback

import pytest

from mlops import outbound
from mlops.outbound import OutboundError, OutboundNotAllowed
from mlops.storage import open_uri
from tests.outbound_servers import FILE_BODY, FileServer, NotHttpServer, closed_port, tls_server_context

NOT_ALLOWED = "is not allowed: its address is not one this deployment may fetch from"


def read(uri: str) -> bytes:
    with outbound.fetch(uri) as chunks:
        return b"".join(chunks)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.0.1",
        "100.64.0.1",
        "100.100.100.200",
        "100.127.255.255",
        "192.0.0.1",
        "192.0.2.1",
        "198.18.0.1",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.88.99.1",
        "::",
        "::1",
        "::127.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b:1::1",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "2001::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:db8::1",
        "3fff::1",
        "100::1",
        "::ffff:0:7f00:1",
        "4000::1",
    ],
)
def test_internal_and_reserved_addresses_are_denied(address):
    assert outbound.address_denied(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "100.63.255.255",
        "100.128.0.1",
        "172.32.0.1",
        "192.169.0.1",
        "11.0.0.1",
        "223.255.255.254",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_are_not(address):
    assert not outbound.address_denied(ipaddress.ip_address(address))


def test_the_setting_allows_exactly_the_addresses_it_names(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("10.1.0.0/16")]
    allowed = [
        a
        for a in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "10.1.2.3", "10.2.0.1", "8.8.8.8")
        if outbound.address_allowed(ipaddress.ip_address(a))
    ]
    assert allowed == ["127.0.0.1", "10.1.2.3", "8.8.8.8"]


def test_an_allowed_server_is_fetched_through_open_uri(files_server, allow_files_server):
    with open_uri(f"{files_server.url}/file") as stream:
        assert stream.read() == FILE_BODY
    assert files_server.requests == [("/file", f"127.0.0.1:{files_server.port}")]


def test_the_same_server_is_refused_by_the_default_policy(files_server):
    with pytest.raises(OutboundNotAllowed, match=NOT_ALLOWED):
        read(f"{files_server.url}/file")
    with pytest.raises(OutboundNotAllowed, match=NOT_ALLOWED):
        outbound.uri_check(f"{files_server.url}/file")
    assert files_server.requests == []


def test_a_host_name_resolving_to_a_denied_address_is_refused(files_server):
    # /etc/hosts maps localhost to loopback: the check is on what the name resolves to, not on the name.
    with pytest.raises(OutboundNotAllowed, match=NOT_ALLOWED):
        read(f"http://localhost:{files_server.port}/file")
    assert files_server.requests == []


def test_a_redirect_to_a_denied_address_is_refused_before_it_is_followed(
    files_server, allow_files_server, internal_server
):
    second = internal_server
    with pytest.raises(OutboundNotAllowed, match=re.escape(f"redirects to '{second.url}/file', which {NOT_ALLOWED}")):
        read(f"{files_server.url}/redirect?to={second.url}/file")

    assert [path for path, _ in files_server.requests] == [f"/redirect?to={second.url}/file"]
    assert second.requests == []


def test_redirects_between_allowed_addresses_are_followed_up_to_the_limit(files_server, allow_files_server, settings):
    settings.OUTBOUND_MAX_REDIRECTS = 2
    assert read(f"{files_server.url}/redirect?to=/redirect%3Fto%3D/file") == FILE_BODY
    with pytest.raises(OutboundError, match="redirected more than 2 times"):
        read(f"{files_server.url}/redirect?to=/redirect%3Fto%3D/redirect%253Fto%253D/file")


def test_a_redirect_to_another_scheme_is_refused(files_server, allow_files_server):
    with pytest.raises(OutboundNotAllowed, match="redirects to 'file:///etc/passwd', which is not an http"):
        read(f"{files_server.url}/redirect?to=file:///etc/passwd")


def test_a_closed_port_an_open_non_http_port_and_a_silent_server_read_the_same(allow_files_server, settings):
    settings.OUTBOUND_READ_TIMEOUT_SECONDS = 0.5
    banner, silent = NotHttpServer(), socket.create_server(("127.0.0.1", 0))
    try:
        messages = []
        for port in (closed_port(), banner.port, silent.getsockname()[1]):
            with pytest.raises(OutboundError) as raised:
                read(f"http://127.0.0.1:{port}/file")
            messages.append(raised.value.message.replace(str(port), "PORT"))
    finally:
        banner.close()
        silent.close()
    assert messages == ["'http://127.0.0.1:PORT/file' could not be fetched."] * 3
    assert "httpx" not in "".join(traceback.format_exception(raised.value))  # nor in a job's logged traceback


def test_a_status_other_than_200_is_reported(files_server, allow_files_server):
    with pytest.raises(OutboundError, match="answered HTTP 403"):
        read(f"{files_server.url}/status?code=403")


def test_a_body_over_the_size_limit_is_cut_off(files_server, allow_files_server, settings):
    settings.OUTBOUND_MAX_BYTES = 100_000
    assert len(read(f"{files_server.url}/stream?bytes=100000")) == 100_000
    with pytest.raises(OutboundError, match="larger than the 100000 bytes"):
        read(f"{files_server.url}/stream?bytes=5000000")
    settings.OUTBOUND_MAX_BYTES = 100
    with pytest.raises(OutboundError, match="larger than the 100 bytes"):  # refused on its Content-Length
        with outbound.fetch(f"{files_server.url}/file"):
            pytest.fail("the body should not have been offered")


def test_a_slow_server_runs_into_the_deadline(files_server, allow_files_server, settings):
    settings.OUTBOUND_DEADLINE_SECONDS = 0.5
    with pytest.raises(OutboundError, match="took longer than the 0.5 seconds"):
        read(f"{files_server.url}/slow")


def test_the_connection_goes_to_the_address_that_was_checked(files_server, allow_files_server, monkeypatch):
    # given a resolver that answers the allowed address once, then an internal one on the same port (DNS rebinding)
    internal = FileServer("127.0.0.2", port=files_server.port)
    real_getaddrinfo, asked = socket.getaddrinfo, []

    def rebinding(host, port, *args, **kwargs):
        asked.append(host)
        if host == "files.example":
            host = "127.0.0.1" if asked.count(host) == 1 else "127.0.0.2"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        # when
        body = read(f"http://files.example:{files_server.port}/file")
    finally:
        internal.close()

    # then the name was resolved once, and the request reached the checked address with the name as Host
    assert body == FILE_BODY
    assert asked.count("files.example") == 1
    assert files_server.requests == [("/file", f"files.example:{files_server.port}")]
    assert internal.requests == []


def test_https_verifies_the_host_name_and_sends_it_as_sni(tmp_path, allow_files_server, settings):
    context, ca_file = tls_server_context(tmp_path, "localhost")
    settings.OUTBOUND_CA_BUNDLE = str(ca_file)
    server = FileServer("127.0.0.1", tls=context)
    try:
        assert read(f"https://localhost:{server.port}/file") == FILE_BODY
        assert server.server_names == ["localhost"]
        assert server.requests == [("/file", f"localhost:{server.port}")]
        # the certificate names localhost, not the address connected to: asked by address, verification fails
        with pytest.raises(OutboundError, match=r"^'https://127.0.0.1:\d+/file' could not be fetched.$"):
            read(f"https://127.0.0.1:{server.port}/file")
        settings.OUTBOUND_CA_BUNDLE = None  # certifi's roots do not know the test CA
        with pytest.raises(OutboundError, match="could not be fetched"):
            read(f"https://localhost:{server.port}/file")
        assert len(server.requests) == 1
    finally:
        server.close()


def test_a_name_that_does_not_resolve_is_reported_as_such():
    with pytest.raises(OutboundError, match="its host name does not resolve"):
        outbound.uri_check("http://no-such-host.invalid/manifest.jsonl")


@pytest.mark.parametrize("uri", ["ftp://example.com/a", "http:///no-host", "http://example.com:port/"])
def test_only_http_urls_with_a_host_pass_the_check(uri):
    with pytest.raises(OutboundNotAllowed):
        outbound.uri_check(uri)
