"""Real listeners on loopback for the outbound-policy tests: an HTTP file server that records what reached it,
optionally over TLS with a certificate from a throwaway CA, and a TCP listener that speaks no HTTP."""

import datetime
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FILE_BODY = b"hello outbound\n" * 100


class _Handler(BaseHTTPRequestHandler):
    """/file: FILE_BODY, or any path of `server.files`; /redirect?to=URL: a 302; /stream?bytes=N: N bytes with no length given; /slow: a byte
    every 0.1 s for 10 s; /status?code=N: an empty answer with that status."""

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Host")))
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        try:
            if parts.path in self.server.files:
                body = self.server.files[parts.path]
                self._answer(200, {"Content-Length": str(len(body))}, body)
            elif parts.path == "/redirect":
                self._answer(302, {"Location": query["to"], "Content-Length": "0"})
            elif parts.path == "/stream":
                self._answer(200, {}, b"x" * int(query["bytes"]))
            elif parts.path == "/slow":
                self._answer(200, {})
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self._answer(int(query.get("code", 404)), {"Content-Length": "0"})
        except ConnectionError:  # the client stopped reading, as the policy makes it
            pass

    def _answer(self, status: int, headers: dict, body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        """Quiet."""


class FileServer:
    """An HTTP(S) server on `host` (IPv4 or IPv6) in a thread serving `files` ({path: body}); `requests` lists
    (path, Host header) it received, `server_names` the TLS SNI names."""

    def __init__(self, host: str = "127.0.0.1", *, port: int = 0, tls: ssl.SSLContext | None = None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
        self.server = server_class((host, port), _Handler)
        self.server.requests = self.requests = []
        self.server.files = self.files = {"/file": FILE_BODY}
        self.server_names = []
        if tls:
            tls.sni_callback = lambda connection, name, context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        netloc = f"[{host}]:{self.port}" if family == socket.AF_INET6 else f"{host}:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{netloc}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NotHttpServer:
    """Accepts TCP connections on 127.0.0.1, writes an SSH-like banner and hangs up: an open port that is no
    web server."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    def close(self) -> None:
        self.listener.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def tls_server_context(folder: Path, host_name: str) -> tuple[ssl.SSLContext, Path]:
    """A server context whose certificate, for `host_name`, a fresh CA signed; and that CA's PEM file."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outbound test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host_name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, ca_file
