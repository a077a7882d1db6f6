"""The built-in image classifier on the CPU: it learns, repeats itself for a seed, stops when told, predicts."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.training.malicious_checkpoint import write_malicious_checkpoint
from tests.training.trainer_data import CLASSES, serving, write_colour_images
from trainers.image_classifier import ImageClassifierTrainer
from trainers.interface import Example
from trainers.opener import open_uri

FAST = {"image_size": 16, "batch_size": 8, "learning_rate": 0.01, "epochs": 3}


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colours")
    return write_colour_images(folder / "train", 12), write_colour_images(
        folder / "validation", 4, seed=1, start_key=1000
    )


def train(examples, output_dir, config, *, on_step=None, on_epoch=None, logs=None):
    train_examples, validation_examples = examples
    return ImageClassifierTrainer().train(
        train=train_examples,
        validation=validation_examples,
        classes=CLASSES,
        config={**FAST, **config},
        opener=open_uri,
        output_dir=output_dir,
        on_step=on_step or (lambda progress: None),
        on_epoch=on_epoch or (lambda metrics: None),
        log=(logs.append if logs is not None else lambda message: None),
    )


def test_training_reduces_the_loss_and_reports_every_step_and_epoch(colour_images, tmp_path):
    steps, epochs = [], []

    result = train(colour_images, tmp_path, {"device": "auto"}, on_step=steps.append, on_epoch=epochs.append)

    assert result.device == "cpu"
    assert [(s.epoch, s.step, s.steps, s.epochs) for s in steps] == [
        (e, s, 5, 3) for e in (1, 2, 3) for s in range(1, 6)
    ]
    assert all(s.images_per_second > 0 and s.eta_seconds >= 0 and 0 <= s.accuracy <= 1 for s in steps)
    assert steps[-1].eta_seconds == 0
    assert epochs == result.epochs and [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs[-1].train_loss < epochs[0].train_loss / 2
    assert epochs[-1].validation_accuracy == 1.0
    assert sorted(result.artifact_files) == ["classes.json", "config.json", "metrics.json", "model.pt"]
    assert json.loads((tmp_path / "classes.json").read_text()) == CLASSES
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == "small-cnn"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["train_loss"] for e in metrics["epochs"]] == [e.train_loss for e in epochs]


def test_resnet18_trains_too(colour_images, tmp_path):
    result = train(colour_images, tmp_path, {"architecture": "resnet18", "image_size": 32, "epochs": 2})

    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    weights = torch.load(tmp_path / "model.pt", weights_only=True)
    assert weights["fc.weight"].shape == (3, 512)


def _weights(folder):
    return torch.load(folder / "model.pt", weights_only=True)


def _losses(result):
    return [(e.train_loss, e.validation_loss) for e in result.epochs]


def test_the_same_seed_gives_identical_weights_and_metrics_and_another_seed_does_not(colour_images, tmp_path):
    config = {"seed": 7, "augment": True, "epochs": 2}

    first = train(colour_images, tmp_path / "a", config)
    second = train(colour_images, tmp_path / "b", config)
    other = train(colour_images, tmp_path / "c", {**config, "seed": 8})

    a, b, c = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert _losses(first) == _losses(second)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])
    assert other.epochs[-1].train_loss != first.epochs[-1].train_loss


def test_the_decoded_cache_feeds_the_same_pixels_as_decoding_and_is_reused_by_the_next_run(colour_images, tmp_path):
    cache_dir = tmp_path / "cache"
    logs = []

    plain = train(colour_images, tmp_path / "plain", {"seed": 3, "augment": True})
    cached = train(
        colour_images,
        tmp_path / "cached",
        {"seed": 3, "augment": True, "cache": "decoded", "cache_dir": str(cache_dir)},
    )
    files = sorted(path.name for path in cache_dir.iterdir())
    reused = train(
        colour_images,
        tmp_path / "reused",
        {"seed": 3, "augment": True, "cache": "decoded", "cache_dir": str(cache_dir)},
        logs=logs,
    )

    assert len(files) == 2 and all(name.endswith(".npy") for name in files)  # train and validation, no partials
    assert sorted(path.name for path in cache_dir.iterdir()) == files
    assert sum("(reused)" in message for message in logs) == 2
    for run in ("cached", "reused"):
        weights = _weights(tmp_path / run)
        assert all(torch.equal(weights[name], _weights(tmp_path / "plain")[name]) for name in weights)
    assert [e.train_loss for e in plain.epochs] == [e.train_loss for e in cached.epochs]
    assert [e.train_loss for e in plain.epochs] == [e.train_loss for e in reused.epochs]
    assert not (tmp_path / "plain").joinpath("decoded-cache").exists()


def test_decoding_workers_give_the_same_run_as_the_main_process(colour_images, tmp_path):
    in_process = train(colour_images, tmp_path / "a", {"epochs": 1, "num_workers": 0})
    with_workers = train(colour_images, tmp_path / "b", {"epochs": 1, "num_workers": 2})

    assert in_process.epochs[0].train_loss == with_workers.epochs[0].train_loss
    assert all(
        torch.equal(a, b)
        for a, b in zip(_weights(tmp_path / "a").values(), _weights(tmp_path / "b").values(), strict=True)
    )


class Cancelled(Exception):
    """What the job's cancellation raises from on_step, as far as the trainer knows."""


@pytest.mark.parametrize("cache", ["none", "decoded"])
def test_an_exception_from_on_step_stops_training_at_once_and_propagates_unchanged(colour_images, tmp_path, cache):
    cancel = Cancelled("job cancelled")
    steps, epochs = [], []

    def on_step(progress):
        steps.append(progress)
        if progress.step == 2:
            raise cancel

    with pytest.raises(Cancelled) as raised:
        train(
            colour_images,
            tmp_path / "run",
            {"cache": cache, "cache_dir": str(tmp_path / "cache")},
            on_step=on_step,
            on_epoch=epochs.append,
        )

    assert raised.value is cancel
    assert [s.step for s in steps] == [1, 2] and epochs == []
    assert not (tmp_path / "run" / "model.pt").exists()
    assert list((tmp_path / "cache").glob("*")) == []  # a cut-short cache fill leaves nothing behind


def test_predict_yields_top_k_per_batch_best_first_in_item_order(colour_images, tmp_path):
    train(colour_images, tmp_path, {"epochs": 3})
    items = colour_images[1]  # the validation images: 4 of each class in turn

    batches = list(
        ImageClassifierTrainer().predict(artifact_dir=tmp_path, items=items, opener=open_uri, batch_size=5, top_k=2)
    )
    everything = [
        p
        for batch in ImageClassifierTrainer().predict(
            artifact_dir=tmp_path, items=items, opener=open_uri, batch_size=64, top_k=10
        )
        for p in batch
    ]

    assert [len(batch) for batch in batches] == [5, 5, 2]
    predictions = [p for batch in batches for p in batch]
    assert [key for key, _ in predictions] == [item.key for item in items]
    for (_, best), item in zip(predictions, items, strict=True):
        assert len(best) == 2 and best[0][1] >= best[1][1] and best[0][0] != best[1][0]
        assert best[0][0] == item.target
    for (_, best_two), (_, all_three) in zip(predictions, everything, strict=True):
        assert len(all_three) == 3  # top_k is capped at the number of classes
        assert sum(p for _, p in all_three) == pytest.approx(1.0, abs=1e-5)
        assert [index for index, _ in best_two] == [index for index, _ in all_three[:2]]
        # the same numbers up to float rounding: convolution kernels may pick another path for another batch size
        assert [p for _, p in best_two] == pytest.approx([p for _, p in all_three[:2]], abs=1e-5)
        assert all_three[2][1] <= all_three[1][1]


def test_weights_that_carry_code_are_refused_and_their_payload_never_runs(colour_images, tmp_path):
    # given: a trained model whose weights file was replaced by one that also carries a pickled payload
    artifacts = tmp_path / "run"
    train(colour_images, artifacts, {"epochs": 1})
    marker = tmp_path / "payload-ran"
    write_malicious_checkpoint(artifacts / "model.pt", marker=marker, weights=_weights(artifacts))
    torch.load(artifacts / "model.pt", weights_only=False)  # the payload is real: a full unpickle runs it
    assert marker.exists()
    marker.unlink()
    # when
    with pytest.raises(ValueError, match=r"Refusing to load model\.pt") as raised:
        list(
            ImageClassifierTrainer().predict(
                artifact_dir=artifacts, items=colour_images[1], opener=open_uri, batch_size=4, top_k=1
            )
        )
    # then
    assert str(raised.value) == (
        "Refusing to load model.pt: it holds more than tensors (a pickled object that could run code)."
    )
    assert not marker.exists()


def test_targets_outside_the_classes_are_refused_before_training(colour_images, tmp_path):
    train_examples, _ = colour_images

    with pytest.raises(ValueError, match="target 3, outside the 3 classes"):
        ImageClassifierTrainer().train(
            train=train_examples,
            validation=[Example(key=9, uri="x", target=3)],
            classes=CLASSES,
            config=FAST,
            opener=open_uri,
            output_dir=tmp_path,
            on_step=print,
            on_epoch=print,
            log=print,
        )


def test_images_are_read_through_the_opener_from_a_real_http_server(colour_images, tmp_path):
    train_examples, validation_examples = colour_images
    folder = Path(train_examples[0].uri).parent.parent
    steps = []

    with serving(folder) as base_url:

        def over_http(example):
            return replace(example, uri=f"{base_url}/{Path(example.uri).parent.name}/{Path(example.uri).name}")

        result = train(
            ([over_http(e) for e in train_examples], [over_http(e) for e in validation_examples]),
            tmp_path,
            {"epochs": 2},
            on_step=steps.append,
        )

    assert len(steps) == 10
    assert result.epochs[-1].validation_accuracy == 1.0


@pytest.mark.parametrize(("count", "batch_size"), [(16, 5), (11, 5), (10, 5), (1, 5), (6, 5)])
def test_an_epoch_sees_every_example_once_and_a_last_single_example_joins_the_batch_before(count, batch_size):
    from trainers.images import epoch_batches

    for seed in (None, 3):
        batches = epoch_batches(count, batch_size, seed)
        assert sorted(i for batch in batches for i in batch) == list(range(count))
        assert all(len(batch) > 1 for batch in batches) or count == 1
