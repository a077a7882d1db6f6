"""Real HTTP servers that play the services we do not own: Auth0 (JWKS + token signing) and the platform."""

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class _JsonServer:
    """A loopback HTTP server in a thread; `handle(method, path, form)` returns (status, json body)."""

    def __init__(self, handle):

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                """Quiet: the tests assert on what matters."""

            def _reply(self, status, body):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._reply(*handle("GET", self.path, {}))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                self._reply(*handle("POST", self.path, form))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.requests: list[tuple[str, str]] = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class FakeAuth0(_JsonServer):
    issuer = "https://tenant.auth0.test/"
    audience = "mlops-api"

    def __init__(self):
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.current_kid = self.rotate()
        super().__init__(self.handle)

    def rotate(self) -> str:
        """Publish a new signing key (the old ones stay published) and sign with it from now on."""
        kid = uuid.uuid4().hex[:12]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.current_kid = kid
        return kid

    def handle(self, method, path, form):
        self.requests.append((method, path))
        if path == "/.well-known/jwks.json":
            keys = []
            for kid, key in self.keys.items():
                jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
                keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
            return 200, {"keys": keys}
        return 404, {"error": "not found"}

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    def sign(self, claims: dict, *, key: rsa.RSAPrivateKey | None = None, kid: str | None = None) -> str:
        kid = kid or self.current_kid
        return jwt.encode(claims, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def issue(self, sub: str, *, lifetime: int = 3600, **overrides) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "exp": now + lifetime}
        return self.sign({**claims, **overrides})


@dataclass
class Grant:
    tenant: str
    workspace: str
    role: str
    database: str = "main"
    email: str = field(default="")


class FakePlatform(_JsonServer):
    """Answers POST /oauth/introspect from the grants the test registered; `down` makes it fail."""

    def __init__(self):
        self.grants: dict[str, Grant] = {}
        self.down = False
        super().__init__(self.handle)

    def grant(self, sub: str, **grant) -> None:
        self.grants[sub] = Grant(**grant)

    def revoke(self, sub: str) -> None:
        self.grants.pop(sub, None)

    def introspections(self) -> int:
        return sum(1 for method, path in self.requests if path == "/oauth/introspect")

    def handle(self, method, path, form):
        self.requests.append((method, path))
        if self.down:
            return 502, {"error": "bad gateway"}
        if method != "POST" or path != "/oauth/introspect":
            return 404, {"error": "not found"}
        claims = jwt.decode(form.get("token", ""), options={"verify_signature": False})
        grant = self.grants.get(claims.get("sub"))
        if grant is None:
            return 200, {"active": False}
        return 200, {
            "active": True,
            "sub": claims["sub"],
            "exp": claims["exp"],
            "scope": "read write",
            "user": {"id": claims["sub"], "email": grant.email or f"{claims['sub']}@example.com"},
            "tenant": {"schema": grant.tenant},
            "workspace": {"id": grant.workspace, "role": grant.role},
            "connection": {"database": grant.database, "schema": grant.tenant},
        }
