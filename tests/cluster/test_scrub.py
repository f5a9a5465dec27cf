"""The scrubber against real processes: a byte flipped in a segment file on disk, while the node
runs, is found by the background scrub (no read needed) and repaired from another replica;
reads return the right bytes throughout."""

import sqlite3
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config

from node.segments import FILE_HEADER_SIZE, KIND_BLOB, KIND_LOG, segment_name
from onezone.cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.fault]
BUCKET = "scrub--use1-az4--x-s3"


@pytest.fixture(scope="module")
def scrubbing(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("scrub") / "onezone-data", nodes=3, port=0,
                     node_options={"scrub_rate_bytes_per_s": 1e9, "scrub_pause_s": 0.2})
    c.start()
    yield c
    c.stop()


def metric(cluster, node: str, name: str) -> float:
    text = urllib.request.urlopen(f"http://{cluster.daemons[node].info['metrics']}/metrics").read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ") or
               line.startswith(name + "{"))


def data_path(data_dir, seq: int, offset: int):
    return data_dir / "segments" / segment_name(KIND_BLOB if offset == FILE_HEADER_SIZE else KIND_LOG, seq)


def extents(data_dir):
    db = sqlite3.connect(f"file:{data_dir / 'index.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT seq, offset, length FROM extents").fetchall()
    finally:
        db.close()
    return [(data_dir / "segments" / segment_name(KIND_BLOB if o == FILE_HEADER_SIZE else KIND_LOG, s), o, n)
            for s, o, n in rows]


def test_flipped_byte_found_by_the_scrubber_and_repaired(scrubbing):
    c = scrubbing
    s3 = boto3.client("s3", endpoint_url=c.endpoint, region_name=c.region,
                      aws_access_key_id=c.credentials["access_key_id"],
                      aws_secret_access_key=c.credentials["secret_access_key"],
                      config=Config(retries={"max_attempts": 1}))
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
        "Location": {"Type": "AvailabilityZone", "Name": "use1-az4"},
        "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}})
    data = b"scrub me " * 1000
    s3.put_object(Bucket=BUCKET, Key="doc", Body=data)
    node = "node-2"
    ((path, offset, length),) = extents(c.data_dir / node)
    with open(path, "r+b") as fh:  # a disk flips one bit
        fh.seek(offset + length // 2)
        b = fh.read(1)
        fh.seek(offset + length // 2)
        fh.write(bytes([b[0] ^ 0x10]))
    deadline = time.monotonic() + 20
    while metric(c, node, "onezone_node_read_repairs_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(c, node, "onezone_node_scrub_bad_extents_total") >= 1
    assert metric(c, node, "onezone_node_read_repairs_total") >= 1
    ((path2, offset2, length2),) = extents(c.data_dir / node)
    assert (path2, offset2) != (path, offset) and length2 == length
    assert s3.get_object(Bucket=BUCKET, Key="doc")["Body"].read() == data


def test_damaged_appended_run_found_by_the_scrubber_and_repaired(scrubbing):
    """An object of two runs (PutObject with x-amz-write-offset-bytes): a bit flipped in the
    appended run's extent is repaired from another replica's copy of that extent."""
    c = scrubbing
    s3 = boto3.client("s3", endpoint_url=c.endpoint, region_name=c.region,
                      aws_access_key_id=c.credentials["access_key_id"],
                      aws_secret_access_key=c.credentials["secret_access_key"],
                      config=Config(retries={"max_attempts": 1}))
    first, more = b"first run " * 500, b"appended run " * 700
    s3.put_object(Bucket=BUCKET, Key="log", Body=first, WriteOffsetBytes=0)
    s3.put_object(Bucket=BUCKET, Key="log", Body=more, WriteOffsetBytes=len(first))
    node = "node-3"

    def run_extent():
        db = sqlite3.connect(f"file:{c.data_dir / node / 'index.db'}?mode=ro", uri=True)
        try:
            (ext_id,), = db.execute("SELECT extent_id FROM runs").fetchall()
            s, o, n = db.execute("SELECT seq, offset, length FROM extents WHERE object_id = ?", (ext_id,)).fetchone()
        finally:
            db.close()
        return data_path(c.data_dir / node, s, o), o, n

    path, offset, length = run_extent()
    with open(path, "rb") as fh:
        fh.seek(offset)
        good = fh.read(length)
    with open(path, "r+b") as fh:  # a disk flips one bit of the appended run
        fh.seek(offset + length // 2)
        fh.write(bytes([good[length // 2] ^ 0x10]))
    deadline = time.monotonic() + 20
    while run_extent()[:2] == (path, offset) and time.monotonic() < deadline:
        time.sleep(0.1)
    path2, offset2, length2 = run_extent()
    assert (path2, offset2) != (path, offset) and length2 == length
    with open(path2, "rb") as fh:
        fh.seek(offset2)
        assert fh.read(length2) == good
    assert metric(c, node, "onezone_node_scrub_bad_extents_total") >= 1
    assert s3.get_object(Bucket=BUCKET, Key="log")["Body"].read() == first + more
