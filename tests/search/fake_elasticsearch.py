"""A small real HTTP server playing Elasticsearch for the endpoints the engine and the indexer call: index
create / delete, mapping updates, aliases (get, atomic update), bulk, search and delete-by-query. Searches are
answered by tests/search/es_evaluator.py over the stored documents. Every request is recorded, and the next bulk
requests can be told to fail (to see retries).
"""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from tests.search.es_evaluator import Evaluator

_CONTENT_TYPE = "application/vnd.elasticsearch+json; compatible-with=9"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    body: object


@dataclass
class FakeIndex:
    mappings: dict
    settings: dict
    documents: dict[str, dict] = field(default_factory=dict)


def _merge(mapping: dict, properties: dict) -> None:
    """A mapping update adds fields; an object's new properties merge into its existing ones."""
    existing = mapping.setdefault("properties", {})
    for name, spec in properties.items():
        if name in existing and "properties" in spec:
            _merge(existing[name], spec["properties"])
        else:
            existing.setdefault(name, spec)


class FakeElasticsearch:
    def __init__(self):
        self.indices: dict[str, FakeIndex] = {}
        self.aliases: dict[str, set[str]] = {}
        self.requests: list[Recorded] = []
        self.bulk_failures: list[int] = []  # statuses the next bulk requests answer with
        self.lock = threading.RLock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeElasticsearch":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.indices.clear()
            self.aliases.clear()
            self.requests.clear()
            self.bulk_failures.clear()

    def resolve(self, target: str) -> list[str]:
        names = []
        for part in target.split(","):
            if part.endswith("*"):
                names += sorted(name for name in self.indices if name.startswith(part[:-1]))
            else:
                names += sorted(self.aliases.get(part, ())) or ([part] if part in self.indices else [])
        return names

    def documents(self, target: str) -> dict[str, dict]:
        with self.lock:
            found = {}
            for name in self.resolve(target):
                found.update(self.indices[name].documents)
            return found

    def requests_to(self, method: str, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    # --- the endpoints

    def handle(self, method: str, path: str, query: dict, body) -> tuple[int, object]:
        parts = [unquote(part) for part in path.strip("/").split("/") if part]
        if not parts:
            return 200, {
                "name": "fake",
                "cluster_name": "fake",
                "version": {"number": "9.0.0"},
                "tagline": "You Know, for Search",
            }
        if parts[0] == "_bulk":
            return self.bulk(body)
        if parts[0] == "_aliases":
            return self.update_aliases(body["actions"])
        if parts[0] == "_alias":
            return self.get_alias(parts[1])
        target, action = parts[0], parts[1] if len(parts) > 1 else None
        if action is None and method == "PUT":
            return self.create_index(target, body or {})
        if action is None and method == "DELETE":
            for name in self.resolve(target):
                self.indices.pop(name)
                for members in self.aliases.values():
                    members.discard(name)
            return 200, {"acknowledged": True}
        if action == "_mapping":
            for name in self.resolve(target):
                _merge(self.indices[name].mappings, body.get("properties", {}))
            return 200, {"acknowledged": True}
        if action == "_refresh":
            return 200, {"_shards": {"failed": 0}}
        if action == "_search":
            return self.search(target, body or {}, query)
        if action == "_delete_by_query":
            deleted = 0
            for name in self.resolve(target):
                index = self.indices[name]
                evaluator = Evaluator(index.mappings)
                for doc_id in [i for i, d in index.documents.items() if evaluator.matches(body["query"], d)]:
                    del index.documents[doc_id]
                    deleted += 1
            return 200, {"deleted": deleted}
        return 400, {"error": {"type": "fake_unsupported", "reason": f"{method} {path}"}, "status": 400}

    def create_index(self, name: str, body: dict) -> tuple[int, dict]:
        if name in self.indices:
            return 400, {
                "error": {"type": "resource_already_exists_exception", "reason": f"index [{name}] exists"},
                "status": 400,
            }
        self.indices[name] = FakeIndex(json.loads(json.dumps(body.get("mappings", {}))), body.get("settings", {}))
        for alias in body.get("aliases", {}):
            self.aliases.setdefault(alias, set()).add(name)
        return 200, {"acknowledged": True, "index": name}

    def get_alias(self, name: str) -> tuple[int, dict]:
        members = sorted(self.aliases.get(name, ()))
        if not members:
            return 404, {"error": f"alias [{name}] missing", "status": 404}
        return 200, {index: {"aliases": {name: {}}} for index in members}

    def update_aliases(self, actions: list[dict]) -> tuple[int, dict]:
        # All or nothing, as Elasticsearch applies one _aliases request.
        staged = {alias: set(members) for alias, members in self.aliases.items()}
        for action in actions:
            ((kind, spec),) = action.items()
            if spec["index"] not in self.indices:
                return 404, {"error": {"type": "index_not_found_exception"}, "status": 404}
            if kind == "add":
                staged.setdefault(spec["alias"], set()).add(spec["index"])
            else:
                staged.get(spec["alias"], set()).discard(spec["index"])
        self.aliases = {alias: members for alias, members in staged.items() if members}
        return 200, {"acknowledged": True}

    def bulk(self, lines: list[dict]) -> tuple[int, dict]:
        if self.bulk_failures:
            status = self.bulk_failures.pop(0)
            return status, {"error": {"type": "fake_unavailable"}, "status": status}
        items, position = [], 0
        while position < len(lines):
            ((action, meta),) = lines[position].items()
            index = self.indices.get(meta["_index"])
            position += 1
            if action == "delete":
                found = index is not None and index.documents.pop(meta["_id"], None) is not None
                items.append(
                    {
                        "delete": {
                            "_id": meta["_id"],
                            "status": 200 if found else 404,
                            "result": "deleted" if found else "not_found",
                        }
                    }
                )
                continue
            document = lines[position]
            position += 1
            if index is None:
                items.append({action: {"_id": meta["_id"], "status": 404}})
            elif action == "create" and meta["_id"] in index.documents:
                items.append(
                    {
                        action: {
                            "_id": meta["_id"],
                            "status": 409,
                            "error": {"type": "version_conflict_engine_exception"},
                        }
                    }
                )
            else:
                index.documents[meta["_id"]] = document
                items.append({action: {"_id": meta["_id"], "status": 201, "result": "created"}})
        return 200, {"errors": any(item[next(iter(item))]["status"] >= 300 for item in items), "items": items}

    def search(self, target: str, body: dict, query: dict) -> tuple[int, dict]:
        names = self.resolve(target)
        if not names:
            if query.get("ignore_unavailable") == ["true"]:
                return 200, {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}
            return 404, {"error": {"type": "index_not_found_exception"}, "status": 404}
        documents = [document for name in names for document in self.indices[name].documents.values()]
        answer = Evaluator(self.indices[names[0]].mappings).search(documents, body)
        if body.get("_source") is False:
            for hit in answer["hits"]["hits"]:
                hit.pop("_source")
        return 200, answer

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if split.path.rstrip("/").endswith("_bulk"):
                    body = [json.loads(line) for line in raw.splitlines() if line.strip()]
                else:
                    body = json.loads(raw) if raw else None
                query = parse_qs(split.query)
                with fake.lock:
                    fake.requests.append(Recorded(self.command, split.path, query, body))
                    status, answer = fake.handle(self.command, split.path, query, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", _CONTENT_TYPE)
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

            def log_message(self, *args):
                """Quiet: the recorded requests are what the tests look at."""

        return Handler
