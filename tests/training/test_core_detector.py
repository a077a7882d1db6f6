"""The detectors in the trainers library (no Django): train, report, cancel, predict boxes, start from given weights,
refuse weights that carry code or do not fit."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from demo.shapes import CLASSES, write_shapes
from tests.training.malicious_checkpoint import write_malicious_checkpoint
from trainers.interface import Example
from trainers.opener import open_uri
from trainers.registry import get_trainer
from trainers.weights import WeightsError

TINY = {"min_size": 48, "max_size": 96, "fpn_channels": 32, "epochs": 1, "batch_size": 4, "device": "cpu"}
LOSS_PARTS = {
    "detector-fcos": {"classification", "bbox_regression", "bbox_ctrness"},
    "detector-faster-rcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    return [
        Example(key=100 + number, uri=str(folder / image.file_name), target=-1, boxes=image.boxes)
        for number, image in enumerate(write_shapes(folder, 8, seed=3))
    ]


def _train(name, shapes, output_dir, *, on_step=lambda progress: None, **config):
    trainer = get_trainer(name)
    return trainer, trainer.train(
        train=shapes[:6],
        validation=shapes[6:],
        classes=list(CLASSES),
        config=trainer.validate_config({**TINY, **config}),
        opener=open_uri,
        output_dir=output_dir,
        on_step=on_step,
        on_epoch=lambda metrics: None,
        log=lambda line: None,
    )


@pytest.mark.parametrize("name", ["detector-fcos", "detector-faster-rcnn"])
def test_a_detector_trains_reports_each_loss_part_and_predicts_boxes(name, shapes, tmp_path):
    steps = []
    trainer, result = _train(name, shapes, tmp_path, on_step=steps.append)
    # then every step reported its loss parts, the speed and an ETA; there is no accuracy
    assert [(step.step, step.steps) for step in steps] == [(1, 2), (2, 2)]
    assert all(set(step.loss_parts) == LOSS_PARTS[name] and step.accuracy is None for step in steps)
    assert steps[-1].loss == pytest.approx(sum(steps[-1].loss_parts.values()), rel=1e-4)
    assert steps[-1].images_per_second > 0 and steps[-1].eta_seconds == 0
    assert result.epochs[0].validation_loss is not None and result.device == "cpu"
    assert sorted(result.artifact_files) == ["classes.json", "config.json", "metrics.json", "model.safetensors"]
    assert json.loads((tmp_path / "classes.json").read_text()) == list(CLASSES)
    # when
    batches = list(
        trainer.predict(
            artifact_dir=tmp_path,
            items=shapes,
            opener=open_uri,
            batch_size=3,
            top_k=5,
            device="cpu",
            score_threshold=0.0,
        )
    )
    # then one entry per item in order, at most top_k boxes each, inside the image, best first
    assert [len(batch) for batch in batches] == [3, 3, 2]
    predictions = [prediction for batch in batches for prediction in batch]
    assert [key for key, _ in predictions] == [example.key for example in shapes]
    for _, boxes in predictions:
        assert len(boxes) <= 5
        assert [score for _, score, _ in boxes] == sorted((score for _, score, _ in boxes), reverse=True)
        for label, _, (x, y, w, h) in boxes:
            assert 0 <= label < len(CLASSES) and x >= 0 and y >= 0 and w >= 0 and h >= 0 and x + w <= 128.01


def test_an_exception_from_on_step_stops_a_detector_at_once(shapes, tmp_path):
    class Cancelled(Exception):
        pass

    def on_step(progress):
        raise Cancelled

    with pytest.raises(Cancelled):
        _train("detector-fcos", shapes, tmp_path, on_step=on_step, epochs=5)
    assert not (tmp_path / "model.safetensors").exists()


def test_a_detector_starts_from_given_weights(shapes, tmp_path):
    _train("detector-fcos", shapes, tmp_path / "first", seed=1)
    first = load_file(tmp_path / "first" / "model.safetensors")
    # when a run with another seed starts from the first run's weights, learning (almost) nothing
    _train(
        "detector-fcos",
        shapes,
        tmp_path / "second",
        seed=2,
        learning_rate=1e-9,
        init_weights=f"file://{tmp_path / 'first' / 'model.safetensors'}",
    )
    second = load_file(tmp_path / "second" / "model.safetensors")
    _train("detector-fcos", shapes, tmp_path / "fresh", seed=2, learning_rate=1e-9)
    fresh = load_file(tmp_path / "fresh" / "model.safetensors")
    # then its weights are the first run's, not its own seed's
    name = "head.classification_head.cls_logits.weight"
    assert torch.allclose(second[name], first[name], atol=1e-6)
    assert not torch.allclose(fresh[name], first[name], atol=1e-3)


def test_the_classifier_starts_from_given_weights_too(tmp_path):
    from tests.training.trainer_data import CLASSES as COLOURS
    from tests.training.trainer_data import write_colour_images

    images = write_colour_images(tmp_path / "images", 4)
    trainer = get_trainer("image-classifier")
    config = {"image_size": 16, "epochs": 1, "batch_size": 6, "device": "cpu"}
    kwargs = {
        "train": images,
        "validation": [],
        "classes": COLOURS,
        "opener": open_uri,
        "on_step": lambda progress: None,
        "on_epoch": lambda metrics: None,
        "log": lambda line: None,
    }
    trainer.train(config=trainer.validate_config({**config, "seed": 1}), output_dir=tmp_path / "first", **kwargs)
    trainer.train(
        config=trainer.validate_config(
            {**config, "seed": 2, "learning_rate": 1e-9, "init_weights": str(tmp_path / "first" / "model.pt")}
        ),
        output_dir=tmp_path / "second",
        **kwargs,
    )
    first, second = (torch.load(tmp_path / run / "model.pt", weights_only=True) for run in ("first", "second"))
    assert torch.allclose(second["classifier.weight"], first["classifier.weight"], atol=1e-6)


def test_weights_that_carry_code_are_refused_and_their_payload_never_runs(shapes, tmp_path):
    _train("detector-fcos", shapes, tmp_path / "first")
    weights = tmp_path / "weights.pt"
    marker = tmp_path / "payload-ran"
    write_malicious_checkpoint(weights, marker=marker, weights=load_file(tmp_path / "first" / "model.safetensors"))
    with pytest.raises(WeightsError, match="could run code"):
        _train("detector-fcos", shapes, tmp_path / "second", init_weights=str(weights))
    assert not marker.exists()
    assert not (tmp_path / "second" / "model.safetensors").exists()


def test_weights_of_another_architecture_or_class_count_are_a_clear_error(shapes, tmp_path):
    _train("detector-fcos", shapes, tmp_path / "fcos")
    fcos = tmp_path / "fcos" / "model.safetensors"
    # another architecture: names missing and unexpected
    with pytest.raises(WeightsError, match=r"does not fit .*missing \d+: .*unexpected \d+: "):
        _train("detector-faster-rcnn", shapes, tmp_path / "rcnn", init_weights=str(fcos))
    # the same architecture for another class count: the class head's shape
    trainer = get_trainer("detector-fcos")
    two_classes = [
        Example(key=e.key, uri=e.uri, target=-1, boxes=tuple(b for b in e.boxes if b[0] < 2)) for e in shapes[:4]
    ]
    with pytest.raises(
        WeightsError,
        match=r"shape mismatch 2: head.classification_head.cls_logits.weight "
        r"\(4, 32, 3, 3\) \(the model.s is \(3, 32, 3, 3\)\)",
    ):
        trainer.train(
            train=two_classes,
            validation=[],
            classes=["square", "disc"],
            opener=open_uri,
            config=trainer.validate_config({**TINY, "init_weights": str(fcos)}),
            output_dir=tmp_path / "two",
            on_step=lambda progress: None,
            on_epoch=lambda metrics: None,
            log=lambda line: None,
        )
    # a file that is neither safetensors nor a torch zip checkpoint (a bare pickle, say)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x80\x04K\x01." + b"\0" * 32)
    with pytest.raises(WeightsError, match="not a safetensors file or a torch zip checkpoint"):
        _train("detector-fcos", shapes, tmp_path / "junk", init_weights=str(junk))
    # a safetensors file whose tensors fit but a name is extra
    extra = tmp_path / "extra.safetensors"
    save_file({**load_file(fcos), "extra.weight": torch.zeros(1)}, extra)
    with pytest.raises(WeightsError, match=r"unexpected 1: extra\.weight"):
        _train("detector-fcos", shapes, tmp_path / "extra", init_weights=str(extra))


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"init_weights": 3}, "init_weights"),
        ({"max_size": 32}, "max_size"),
        ({"anchors": 1}, "anchors"),
        ({"fpn_channels": 48}, "fpn_channels"),
    ],
)
def test_bad_detector_configs_name_the_key(config, key):
    from trainers.interface import ConfigError

    with pytest.raises(ConfigError) as error:
        get_trainer("detector-fcos").validate_config(config)
    assert error.value.key == key
