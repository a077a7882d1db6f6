"""A small random dataset (fixed seed) whose values the query strategies draw from."""

import random

CLASSES = ["vehicle", "vehicle/car", "vehicle/car/sedan", "vehicle/bus", "vehicle_x", "person", "daytime"]
MODELS = [("yolo", "1"), ("yolo", "2"), ("detr", "1")]
WEATHER = ["rain", "sun", "fog", "Snow", "état", "rain_x", "50%"]
TAGS = ["night", "city", "highway", "rain", "n_1", "N%"]
WORDS = ["red", "car", "blue", "bus", "night", "Red", "truck"]
TIMES = [
    "2024-05-01T10:00:00Z",
    "2024-05-01T12:00:00+02:00",
    "2024-05-02",
    "2023-12-31T23:59:59Z",
    "2024-05-01 10:00:00",
]
COLORS = ["red", "blue", "green", "Red"]
SIZES = [(640, 480), (320, 240), (1024, 768), (None, None)]
DIRS = ["a", "b", "c_d"]
ODD_KEY = 'odd "key" x'


def _box(rng: random.Random, width, height) -> list[float]:
    width, height = width or 2000, height or 2000
    w = round(rng.uniform(1, width / 2), 1)
    h = round(rng.uniform(1, height / 2), 1)
    return [round(rng.uniform(0, width - w - 1), 1), round(rng.uniform(0, height - h - 1), 1), w, h]


def _attributes(rng: random.Random) -> dict:
    attributes = {}
    if rng.random() < 0.6:
        attributes["occluded"] = rng.random() < 0.5
    if rng.random() < 0.5:
        attributes["color"] = rng.choice(COLORS)
    if rng.random() < 0.2:
        attributes["parts"] = rng.sample(COLORS, 2)
    if rng.random() < 0.2:
        attributes["truncation"] = rng.choice([0, 0.25, 0.5, 1])
    return attributes


def _metadata(rng: random.Random) -> dict:
    metadata: dict = {}
    if rng.random() < 0.8:
        metadata["weather"] = rng.choice(WEATHER) if rng.random() < 0.9 else None
    capture: dict = {}
    if rng.random() < 0.7:
        capture["gps"] = {"lat": rng.choice([40, 40.5, -12.25, 48.1, 0, 89.9])}
    if rng.random() < 0.7:
        capture["time"] = rng.choice(TIMES)
        if capture["time"] == TIMES[2]:  # some rows hold a list of datetimes (no extra draw: the rest stays as it was)
            capture["time"] = [TIMES[2], TIMES[3]]
    if capture:
        metadata["capture"] = capture
    if rng.random() < 0.6:
        metadata["night"] = rng.random() < 0.5
    if rng.random() < 0.7:
        metadata["caption"] = " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))
    if rng.random() < 0.4:
        metadata["objects_seen"] = rng.sample(WORDS, rng.randint(0, 3))
    if rng.random() < 0.3:
        metadata["people"] = [
            {"name": rng.choice(["ann", "bob"]), "age": rng.randint(1, 90)} for _ in range(rng.randint(1, 2))
        ]
    if rng.random() < 0.3:
        metadata[ODD_KEY] = rng.choice(WEATHER)
    return metadata


def random_records(seed: int, count: int) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        width, height = rng.choice(SIZES)
        record = {
            "external_id": f"img-{i:03d}",
            "uri": f"s3://bucket/{rng.choice(DIRS)}/{i}.jpg",
            "metadata": _metadata(rng),
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
        }
        if width:
            record.update(width=width, height=height)
        labels = []
        for _ in range(rng.choice([0, 1, 1, 2, 3, 4, 5])):
            label = {"class": rng.choice(CLASSES), "attributes": _attributes(rng)}
            if rng.random() < 0.85:
                label["box"] = _box(rng, width, height)
            labels.append(label)
        record["labels"] = labels
        predictions = []
        for _ in range(rng.choice([0, 1, 2, 3])):
            name, version = rng.choice(MODELS)
            predictions.append(
                {
                    "model": name,
                    "version": version,
                    "class": rng.choice(CLASSES),
                    "score": round(rng.random(), 2),
                    "box": _box(rng, width, height),
                    "attributes": _attributes(rng),
                }
            )
        record["predictions"] = predictions
        records.append(record)
    return records
