import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TENANT_A

# A config the built-in classifier trains in well under a second on tiny images.
TINY_CONFIG = {
    "architecture": "small-cnn",
    "image_size": 16,
    "epochs": 2,
    "batch_size": 4,
    "learning_rate": 0.01,
    "seed": 0,
    "device": "cpu",
    "num_workers": 0,
    "augment": False,
}
# A detector's: one epoch on a few shapes at 48 px in a few seconds (it learns little; the demo test scores one).
TINY_DETECTOR_CONFIG = {
    "min_size": 48,
    "max_size": 96,
    "fpn_channels": 32,
    "epochs": 1,
    "batch_size": 4,
    "device": "cpu",
    "augment": False,
}


def png_of_colour(colour: tuple[int, int, int], seed: int, size: int = 12) -> bytes:
    """A small PNG of one colour with a little noise: two colours are two classes a small CNN tells apart."""
    noise = np.random.default_rng(seed).integers(-20, 20, (size, size, 3))
    pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@dataclass
class ImageData:
    project: object
    dataset: object
    slice: object
    datarow_ids: list[int]
    classes: dict[int, str]  # datarow id -> class name


def make_image_data(root: Path, *, count: int = 16, unreadable: int = 0, name: str | None = None) -> ImageData:
    """In tenant A (active): a project whose dataset has `count` red or blue PNG datarows under `root`, labelled
    by colour, and an ids slice of them split 3:1 into train / validation. The first `unreadable` datarows
    point at files that are not there."""
    from datasets.models import DataRow, Label, OntologyClass
    from slices.models import SliceMember, Split
    from slices.services import slice_create_from_ids
    from tests.factories import dataset_make, project_make

    project = project_make(name=name)
    dataset = dataset_make(project=project, name="images")
    folder = root / project.name
    folder.mkdir(parents=True)
    ontology = {colour: OntologyClass.objects.create(project=project, name=colour) for colour in ("blue", "red")}
    rows, names = [], {}
    for i in range(count):
        colour = "red" if i % 2 else "blue"
        path = folder / f"{i}.png"
        if i >= unreadable:
            path.write_bytes(png_of_colour((220, 30, 30) if colour == "red" else (30, 30, 220), seed=i))
        rows.append(DataRow(dataset=dataset, external_id=str(i), uri=str(path)))
        names[i] = colour
    rows = DataRow.objects.bulk_create(rows)
    Label.objects.bulk_create(
        Label(datarow=row, ontology_class=ontology[names[i]], kind="classification", source="test", updated_by="test")
        for i, row in enumerate(rows)
    )
    ids = [row.pk for row in rows]
    sliced = slice_create_from_ids(project=project, name="all", created_by="tester", datarow_ids=ids)
    for i, datarow_id in enumerate(ids):
        SliceMember.objects.filter(slice=sliced, datarow_id=datarow_id).update(
            split=Split.VALIDATION if i % 4 == 3 else Split.TRAIN
        )
    return ImageData(
        project=project,
        dataset=dataset,
        slice=sliced,
        datarow_ids=ids,
        classes={datarow_id: names[i] for i, datarow_id in enumerate(ids)},
    )


@pytest.fixture
def storage(tmp_path, settings) -> Path:
    """Images are read from tenant A's folder of the read root (tmp_path/imports/acme/images) and artifacts written
    under tmp_path/storage."""
    settings.LOCAL_READ_ROOT = tmp_path / "imports"
    images = settings.LOCAL_READ_ROOT / TENANT_A / "images"
    images.mkdir(parents=True)
    settings.STORAGE_ROOT = tmp_path / "storage"
    return images


@dataclass
class BoxData:
    project: object
    dataset: object
    slice: object
    datarow_ids: list[int]
    classes: list[str]  # the run's classes, sorted by name as a run orders them
    box_count: int


def make_box_data(root: Path, *, count: int = 8, name: str | None = None) -> BoxData:
    """In tenant A (active): a project whose dataset has `count` shape images (demo.shapes) under `root` with their
    box labels, and an ids slice of them split 3:1 into train / validation."""
    from datasets.models import DataRow, Label, OntologyClass
    from demo.shapes import CLASSES, write_shapes
    from slices.models import SliceMember, Split
    from slices.services import slice_create_from_ids
    from tests.factories import dataset_make, project_make

    project = project_make(name=name)
    dataset = dataset_make(project=project, name="shapes")
    folder = root / project.name
    images = write_shapes(folder, count, seed=5)
    ontology = [OntologyClass.objects.create(project=project, name=name) for name in CLASSES]
    rows = DataRow.objects.bulk_create(
        DataRow(
            dataset=dataset,
            external_id=str(i),
            uri=str(folder / image.file_name),
            width=image.width,
            height=image.height,
        )
        for i, image in enumerate(images)
    )
    Label.objects.bulk_create(
        Label(
            datarow=row,
            ontology_class=ontology[label],
            kind="box",
            x=x,
            y=y,
            w=w,
            h=h,
            area=w * h,
            source="test",
            updated_by="test",
        )
        for row, image in zip(rows, images, strict=True)
        for label, x, y, w, h in image.boxes
    )
    ids = [row.pk for row in rows]
    sliced = slice_create_from_ids(project=project, name="all", created_by="tester", datarow_ids=ids)
    for i, datarow_id in enumerate(ids):
        SliceMember.objects.filter(slice=sliced, datarow_id=datarow_id).update(
            split=Split.VALIDATION if i % 4 == 3 else Split.TRAIN
        )
    return BoxData(
        project=project,
        dataset=dataset,
        slice=sliced,
        datarow_ids=ids,
        classes=sorted(CLASSES),
        box_count=sum(len(image.boxes) for image in images),
    )
