"""`python -m trainers.cli`: train and predict from a JSONL manifest in a plain interpreter."""

import json
import subprocess
import sys
from pathlib import Path

from tests.training.trainer_data import CLASSES, write_colour_images

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*arguments: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainers.cli", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_train_then_predict_from_a_manifest_with_relative_paths(tmp_path):
    train = write_colour_images(tmp_path / "images", 8)
    validation = write_colour_images(tmp_path / "images", 2, seed=1, start_key=500)
    lines = [{"uri": f"images/{Path(e.uri).name}", "class": CLASSES[e.target]} for e in train]
    lines += [
        {"uri": f"images/{Path(e.uri).name}", "class": CLASSES[e.target], "split": "validation", "key": e.key}
        for e in validation
    ]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))

    trained = run_cli(
        "train",
        "--manifest",
        str(manifest),
        "--classes",
        *CLASSES,
        "--out",
        str(tmp_path / "run"),
        "--config",
        json.dumps({"image_size": 16, "batch_size": 8, "epochs": 3, "learning_rate": 0.01}),
    )
    predicted = run_cli("predict", "--manifest", str(manifest), "--artifacts", str(tmp_path / "run"), "--top-k", "2")

    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["device"] == "cpu" and summary["final_epoch"]["validation_accuracy"] == 1.0
    assert "epoch 3/3 step 3/3" in trained.stderr
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [row["key"] for row in rows] == [*range(1, 25), 500, 501, 502, 503, 504, 505]
    assert all(
        row["top"][0]["class"] == line["class"] and len(row["top"]) == 2 for row, line in zip(rows, lines, strict=True)
    )


def test_a_bad_config_stops_the_cli_naming_the_key(tmp_path):
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(json.dumps({"uri": "a.jpg", "class": "red"}) + "\n")

    result = run_cli("train", "--manifest", str(manifest), "--out", str(tmp_path / "run"), "--config", '{"epochs": 0}')

    assert result.returncode == 1
    assert "Bad config: epochs: must be an integer from 1 to 10000, not 0" in result.stderr


def test_the_trainer_is_a_built_in_or_trainer_plugins_name_never_a_path(tmp_path):
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(json.dumps({"uri": "a.png", "class": "red"}) + "\n")
    plugins = json.dumps({"exiting": "tests.training.exiting_plugin:Trainer"})

    by_path = run_cli(
        "--trainer",
        "this:x",
        "train",
        "--manifest",
        str(manifest),
        "--out",
        str(tmp_path / "run"),
        TRAINER_PLUGINS=plugins,
    )
    exiting = run_cli(
        "--trainer",
        "exiting",
        "train",
        "--manifest",
        str(manifest),
        "--out",
        str(tmp_path / "run"),
        TRAINER_PLUGINS=plugins,
    )

    assert by_path.returncode == 1 and "Beautiful is better than ugly" not in by_path.stdout
    assert (
        by_path.stderr.strip()
        == "Unknown trainer 'this:x': use one of detector-faster-rcnn, detector-fcos, exiting, image-classifier."
    )
    assert exiting.returncode == 1 and exiting.stderr.strip() == (
        "Trainer 'exiting' (tests.training.exiting_plugin:Trainer) could not be loaded: SystemExit: this plugin exits "
        "on import"
    )
