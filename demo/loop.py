"""The whole loop over the REST API, as a user would drive it with a token.

Import the digits (a labelled seed set, a fixed held-out set, an unlabelled pool), query them, freeze slices,
split, train from the seed set with the progress streamed from the job websocket, predict on the pool, pick the
next batch by least confidence, reveal its labels (the oracle file plays the annotator, through the label API),
retrain; and the same labelling budget picked at random. Every model is scored on the same held-out slice and
all accuracies are printed at the end. `make demo` runs it against a freshly started platform; tests run the
same loop at a small scale against their live server and workers.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from websockets.sync.client import connect as websocket_connect

from demo.digits import DigitsFiles

ARMS = ("least_confidence", "random")


@dataclass(frozen=True)
class LoopSettings:
    rounds: int = 2
    batch: int = 100  # labels revealed per round
    epochs: int = 15
    image_size: int = 32
    seed: int = 7


@dataclass
class LoopOutcome:
    # (arm, round, labelled rows, held-out accuracy); round 0 is the seed model, shared by both arms.
    scores: list[tuple[str, int, int, float]] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'strategy':<18} {'round':>5} {'labelled':>9} {'held-out accuracy':>18}"]
        lines += [
            f"{arm:<18} {round_:>5} {labelled:>9} {accuracy:>18.3f}" for arm, round_, labelled, accuracy in self.scores
        ]
        return "\n".join(lines)


class PlatformError(RuntimeError):
    """The platform answered an error, or a job did not succeed."""


class Platform:
    """The REST API and the job websocket, with one bearer token."""

    def __init__(self, base_url: str, token: str, *, say: Callable[[str], None] = print):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.say = say
        self.http = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.http.request(method, f"/api/v1/{path}", **kwargs)
        if response.status_code >= 400:
            raise PlatformError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else {}

    def follow_job(self, job_id: str, title: str) -> dict:
        """Print the job's progress from its websocket until it ends; fail loudly unless it succeeded."""
        ws_url = self.base_url.replace("http", "ws", 1) + f"/ws/jobs/{job_id}/?token={self.token}"
        job: dict = {}
        last_message = None
        with websocket_connect(ws_url, open_timeout=30) as websocket:
            for text in websocket:
                job = json.loads(text)["job"]
                if job["message"] and job["message"] != last_message:
                    self.say(f"  [{title}] {job['message']}{_training_figures(job['counters'])}")
                    last_message = job["message"]
        if job.get("status") != "succeeded":
            raise PlatformError(f"{title} ended {job.get('status')}: {job.get('error')}")
        return job

    def get_when(self, path: str, ready: Callable[[dict], bool], *, timeout: float = 30) -> dict:
        """GET until `ready` holds: reads go to the replica, which may be a moment behind what a worker wrote."""
        deadline = time.monotonic() + timeout
        while not ready(body := self.call("GET", path)):
            if time.monotonic() > deadline:
                raise PlatformError(f"GET {path} did not show the expected state within {timeout:.0f} s: {body}")
            time.sleep(0.2)
        return body

    def members(self, project_id: int, slice_id: int) -> list[dict]:
        rows, cursor = [], None
        while True:
            page = self.call(
                "GET",
                f"projects/{project_id}/slices/{slice_id}/members",
                params={"page_size": 500, **({"cursor": cursor} if cursor else {})},
            )
            rows += page["results"]
            cursor = page["next_cursor"]
            if not cursor:
                return rows


def _training_figures(counters: dict) -> str:
    if "images_per_second" not in counters:
        return ""
    # A detector has no accuracy: its loss parts instead.
    quality = (
        f", accuracy {counters['accuracy']:.3f}"
        if counters.get("accuracy") is not None
        else "".join(f", {name} {value:.3f}" for name, value in counters.get("loss_parts", {}).items())
    )
    return f"{quality}, {counters['images_per_second']:.1f} images/s, ETA {counters['eta_seconds']:.0f} s"


def run_loop(
    platform: Platform,
    files: DigitsFiles,
    settings: LoopSettings = LoopSettings(),
    *,
    project_name: str = "digits loop",
) -> LoopOutcome:
    say = platform.say
    oracle: dict[str, str] = json.loads(files.oracle.read_text())
    project = platform.call("POST", "projects/", json={"name": project_name})
    p = project["id"]
    dataset = platform.call("POST", f"projects/{p}/datasets/", json={"name": "digits"})
    say(f"Importing {files.rows} images ({files.seed_rows} labelled seed, {files.holdout_rows} held out)...")
    job = platform.call(
        "POST",
        f"projects/{p}/datasets/{dataset['id']}/imports",
        json={"uri": str(files.manifest), "format": "jsonl", "create_classes": True},
    )
    platform.follow_job(job["id"], "import")

    found = platform.call(
        "POST", f"projects/{p}/search", json={"query": "tags = 'holdout'", "page_size": 1, "facets": ["label.class"]}
    )
    say(
        f"Query tags = 'holdout': {found['total']['value']} rows, classes "
        f"{', '.join(f['value'] for f in found['facets']['label.class'])}"
    )
    holdout = frozen_slice(platform, p, "holdout", "tags = 'holdout'")

    outcome = LoopOutcome()
    seed_accuracy = seed_version_id = None
    for arm in ARMS:
        picked_tag = f"picked-{arm}"
        labelled_query = f"tags IN ('seed', '{picked_tag}')"
        for round_ in range(settings.rounds + 1):
            if round_ == 0 and seed_version_id is not None:  # every strategy starts from the same seed model
                version_id = seed_version_id
                outcome.scores.append((arm, 0, files.seed_rows, seed_accuracy))
            else:
                train = frozen_slice(platform, p, f"{arm}-train-{round_}", labelled_query)
                platform.call(
                    "POST",
                    f"projects/{p}/slices/{train['id']}/split",
                    json={"seed": settings.seed, "fractions": {"train": 0.85, "validation": 0.15}, "stratified": True},
                )
                version_id = _train(platform, p, arm, round_, train, settings)
                accuracy = _holdout_accuracy(platform, p, version_id, holdout)
                outcome.scores.append((arm, round_, train["member_count"], accuracy))
                say(f"{arm} round {round_}: {train['member_count']} labelled rows -> held-out accuracy {accuracy:.3f}")
                if round_ == 0:
                    seed_accuracy, seed_version_id = accuracy, version_id
            if round_ == settings.rounds:
                break
            pool = frozen_slice(platform, p, f"{arm}-pool-{round_}", f"tags = 'pool' AND NOT tags = '{picked_tag}'")
            run = platform.call(
                "POST",
                f"projects/{p}/prediction-runs",
                json={"model_version_id": version_id, "slice_id": pool["id"], "top_k": 10},
            )
            platform.follow_job(run["job"]["id"], f"predict {arm} round {round_}")
            platform.get_when(
                f"projects/{p}/prediction-runs/{run['id']}",
                lambda r, pool=pool: r["datarow_count"] == pool["member_count"],
            )
            picked = platform.call(
                "POST",
                f"projects/{p}/prediction-runs/{run['id']}/selections",
                json={
                    "name": f"{arm}-picked-{round_}",
                    "strategy": arm,
                    "k": settings.batch,
                    "seed": settings.seed + round_,
                    "pool_slice_id": pool["id"],
                },
            )
            _reveal_labels(platform, p, dataset["id"], picked["id"], oracle, picked_tag)
            say(f"{arm} round {round_}: picked {picked['member_count']} rows and revealed their labels")
    return outcome


def frozen_slice(platform: Platform, project_id: int, name: str, query: str) -> dict:
    created = platform.call(
        "POST", f"projects/{project_id}/slices/", json={"name": name, "kind": "frozen", "query": query}
    )
    if "job" in created:  # too large to freeze in the request: a job fills it
        platform.follow_job(created["job"]["id"], f"freeze {name}")
        created = created["slice"]
    return platform.get_when(f"projects/{project_id}/slices/{created['id']}", lambda s: s["status"] == "ready")


def _train(platform: Platform, project_id: int, arm: str, round_: int, train: dict, settings: LoopSettings) -> int:
    model = platform.call(
        "POST",
        f"projects/{project_id}/models",
        json={
            "name": f"digits-{arm}-{round_}",
            "trainer": "image-classifier",
            "hyperparameters": {
                "architecture": "small-cnn",
                "image_size": settings.image_size,
                "epochs": settings.epochs,
                "batch_size": 32,
                "seed": settings.seed,
            },
        },
    )
    run = platform.call("POST", f"projects/{project_id}/models/{model['id']}/runs", json={"slice_id": train["id"]})
    platform.follow_job(run["job"]["id"], f"train {arm} round {round_}")
    return platform.get_when(
        f"projects/{project_id}/training-runs/{run['id']}", lambda r: r["model_version_id"] is not None
    )["model_version_id"]


def _holdout_accuracy(platform: Platform, project_id: int, version_id: int, holdout: dict) -> float:
    run = platform.call(
        "POST",
        f"projects/{project_id}/prediction-runs",
        json={"model_version_id": version_id, "slice_id": holdout["id"], "top_k": 3},
    )
    platform.follow_job(run["job"]["id"], "predict held-out")
    platform.get_when(
        f"projects/{project_id}/prediction-runs/{run['id']}", lambda r: r["datarow_count"] == holdout["member_count"]
    )
    metrics = platform.call(
        "GET", f"projects/{project_id}/model-versions/{version_id}/metrics", params={"slice_id": holdout["id"]}
    )
    return metrics["accuracy"]


def _reveal_labels(
    platform: Platform, project_id: int, dataset_id: int, slice_id: int, oracle: dict[str, str], tag: str
) -> None:
    """The annotator's part: label each picked row from the oracle (unless another strategy labelled it), tag it."""
    members = platform.members(project_id, slice_id)
    for row in members:
        detail = platform.call("GET", f"projects/{project_id}/datasets/{dataset_id}/datarows/{row['id']}")
        if not detail["labels"]:
            platform.call(
                "POST",
                f"projects/{project_id}/datasets/{dataset_id}/datarows/{row['id']}/labels",
                json={"class": oracle[row["external_id"]]},
            )
    platform.call(
        "POST",
        f"projects/{project_id}/datasets/{dataset_id}/datarows/tags",
        json={"datarow_ids": [row["id"] for row in members], "add": [tag]},
    )
