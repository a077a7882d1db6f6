"""The plain-script opener on local paths, file:// URIs, a real HTTP server on loopback and moto's S3."""

from urllib.error import HTTPError

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.training.trainer_data import serving
from trainers.opener import open_uri


@pytest.fixture
def http_folder(tmp_path):
    with serving(tmp_path) as base_url:
        yield tmp_path, base_url


def test_local_paths_and_file_uris_are_read(tmp_path):
    path = tmp_path / "a folder" / "image one.jpg"
    path.parent.mkdir()
    path.write_bytes(b"\xff\xd8 bytes")

    with open_uri(str(path)) as plain, open_uri("file://" + str(path).replace(" ", "%20")) as uri:
        assert plain.read() == uri.read() == b"\xff\xd8 bytes"


def test_http_objects_stream_from_a_real_server_and_a_missing_one_raises(http_folder):
    folder, base_url = http_folder
    (folder / "img.png").write_bytes(b"png" * 100_000)

    with open_uri(f"{base_url}/img.png") as stream:
        assert stream.read() == b"png" * 100_000
    with pytest.raises(HTTPError) as raised, open_uri(f"{base_url}/missing.png"):
        pass
    assert raised.value.code == 404


def test_s3_objects_are_read_through_boto3_from_the_configured_endpoint(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in (
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", f"http://{host}:{port}"),
        ):
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket="images")
        client.put_object(Bucket="images", Key="set/a.jpg", Body=b"jpeg bytes")

        with open_uri("s3://images/set/a.jpg") as stream:
            assert stream.read() == b"jpeg bytes"
    finally:
        server.stop()


def test_an_unsupported_scheme_is_refused():
    with pytest.raises(ValueError, match="Unsupported URI scheme 'ftp'"), open_uri("ftp://host/a.jpg"):
        pass
