"""Small JSONL manifests for the live import tests."""

import orjson


def manifest_rows(start: int, count: int):
    for i in range(start, start + count):
        yield {
            "external_id": f"img-{i}",
            "uri": f"s3://b/{i}.jpg",
            "width": 64,
            "height": 48,
            "metadata": {"weather": "rain" if i % 2 else "sun"},
            "tags": ["live"],
            "labels": [{"class": "cat", "box": [1, 1, 10, 10]}, {"class": "dog"}],
        }


def write_manifest(path, records) -> str:
    with open(path, "wb") as out:
        out.writelines(orjson.dumps(record) + b"\n" for record in records)
    return str(path)
