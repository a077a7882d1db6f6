"""Train or predict from a JSONL manifest, without Django:

    python -m trainers.cli train --manifest rows.jsonl --out run/ [--classes cat dog] [--config '{"epochs": 3}']
    python -m trainers.cli predict --manifest rows.jsonl --artifacts run/ [--top-k 3] > predictions.jsonl

Each manifest line: {"uri": ..., "class": ..., "split": "train" | "validation" (default train), "key": int
(default the line number)}. A relative path is taken relative to the manifest's folder. Predictions are
printed as JSON lines; progress goes to stderr. --trainer names a built-in trainer or one of the plugins in the
TRAINER_PLUGINS environment variable (JSON {"name": "package.module:ClassName"}), as in the platform.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from trainers.interface import ConfigError, Example, StepProgress, Trainer
from trainers.opener import open_uri
from trainers.registry import TrainerError, get_trainer


def read_manifest(path: Path) -> list[dict]:
    rows = []
    with open(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "uri" not in row:
                raise SystemExit(f"{path}:{number}: a manifest line needs a 'uri'.")
            uri = row["uri"]
            if not urlsplit(uri).scheme and not Path(uri).is_absolute():
                uri = str(path.parent / uri)
            rows.append({**row, "uri": uri, "key": row.get("key", number)})
    return rows


def trainer_get(name: str) -> Trainer:
    try:
        return get_trainer(name, json.loads(os.environ.get("TRAINER_PLUGINS") or "{}"))
    except (TrainerError, ValueError) as error:
        raise SystemExit(str(error)) from error


def train(arguments: argparse.Namespace) -> None:
    rows = read_manifest(arguments.manifest)
    classes = arguments.classes or sorted({row["class"] for row in rows if row.get("class") is not None})
    index = {name: position for position, name in enumerate(classes)}
    unknown = {row.get("class") for row in rows} - index.keys()
    if unknown:
        raise SystemExit(f"Manifest classes not in --classes: {sorted(map(str, unknown))}")
    splits: dict[str, list[Example]] = {"train": [], "validation": []}
    for row in rows:
        splits[row.get("split", "train")].append(Example(key=row["key"], uri=row["uri"], target=index[row["class"]]))
    trainer = trainer_get(arguments.trainer)
    try:
        config = trainer.validate_config(json.loads(arguments.config))
    except ConfigError as error:
        raise SystemExit(f"Bad config: {error}") from error
    last_print = [0.0]

    def on_step(progress: StepProgress) -> None:
        now = time.monotonic()
        if now - last_print[0] >= 1 or progress.step == progress.steps:
            last_print[0] = now
            parts = "".join(f" {name} {value:.4f}" for name, value in progress.loss_parts.items())
            accuracy = "" if progress.accuracy is None else f" accuracy {progress.accuracy:.3f}"
            print(
                f"epoch {progress.epoch}/{progress.epochs} step {progress.step}/{progress.steps} "
                f"loss {progress.loss:.4f}{parts}{accuracy} "
                f"{progress.images_per_second:.1f} images/s eta {progress.eta_seconds:.0f} s",
                file=sys.stderr,
            )

    result = trainer.train(
        train=splits["train"],
        validation=splits["validation"],
        classes=classes,
        config=config,
        opener=open_uri,
        output_dir=arguments.out,
        on_step=on_step,
        on_epoch=lambda metrics: print(f"epoch done: {metrics}", file=sys.stderr),
        log=lambda message: print(message, file=sys.stderr),
    )
    print(
        json.dumps(
            {
                "device": result.device,
                "artifacts": [str(arguments.out / name) for name in result.artifact_files],
                "final_epoch": result.epochs[-1].__dict__,
            }
        )
    )


def predict(arguments: argparse.Namespace) -> None:
    rows = read_manifest(arguments.manifest)
    classes = json.loads((arguments.artifacts / "classes.json").read_text())
    items = [Example(key=row["key"], uri=row["uri"], target=-1) for row in rows]
    uris = {row["key"]: row["uri"] for row in rows}
    trainer = trainer_get(arguments.trainer)
    for batch in trainer.predict(
        artifact_dir=arguments.artifacts,
        items=items,
        opener=open_uri,
        batch_size=arguments.batch_size,
        top_k=arguments.top_k,
        device=arguments.device,
    ):
        for key, best in batch:
            print(
                json.dumps(
                    {
                        "key": key,
                        "uri": uris[key],
                        "top": [{"class": classes[index], "probability": round(p, 6)} for index, p in best],
                    }
                )
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainers.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer", default="image-classifier", help="a built-in or TRAINER_PLUGINS name")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train")
    train_parser.add_argument("--manifest", type=Path, required=True)
    train_parser.add_argument(
        "--classes", nargs="+", help="class names in index order (default: the manifest's, sorted)"
    )
    train_parser.add_argument("--out", type=Path, required=True)
    train_parser.add_argument("--config", default="{}", help="the trainer config as a JSON object")
    predict_parser = commands.add_parser("predict")
    predict_parser.add_argument("--manifest", type=Path, required=True)
    predict_parser.add_argument("--artifacts", type=Path, required=True)
    predict_parser.add_argument("--top-k", type=int, default=3)
    predict_parser.add_argument("--batch-size", type=int, default=64)
    predict_parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    arguments = parser.parse_args(argv)
    train(arguments) if arguments.command == "train" else predict(arguments)


if __name__ == "__main__":
    main()
