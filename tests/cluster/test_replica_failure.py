"""Replication with epochs, against real processes (4 nodes, 3 replicas, real boto3): a replica
killed with SIGKILL during a write load leaves the bucket's set in a new epoch, writes go on,
the spare node joins as the replacement and receives a full copy from the primary; nothing
acknowledged is lost, and every replica of the new epoch serves every object byte for byte."""

import random
import threading
import time

import boto3
import pytest
import trio
from botocore.config import Config

from onezone.cluster import LocalCluster
from proto import errors as rpc_errors
from proto.rpc import open_rpc_pool
from proto.settings import TlsConfig

pytestmark = [pytest.mark.cluster, pytest.mark.fault]
BUCKET = "epochs--use1-az4--x-s3"


@pytest.fixture(scope="module")
def cluster4(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("epochs") / "onezone-data", nodes=4, port=0)
    c.start()
    yield c
    c.stop()


def rpc(cluster, principal: str, target: str, method: str, args: dict, *, stream: bool = False):
    certs = cluster.data_dir / "certs"
    tls = TlsConfig(ca=certs / "ca.pem", cert=certs / f"{principal}.pem", key=certs / f"{principal}.key")
    host, port = cluster.daemons[target].info["rpc"].rsplit(":", 1)

    async def go():
        async with open_rpc_pool(tls.client_context(), default_timeout_s=10) as pool:
            client = pool.client(host, int(port), target)
            if not stream:
                return await client.call(method, args)
            async with client.stream(method, args) as reply:
                return reply.result, b"".join([p async for p in reply.body])

    try:
        return trio.run(go)
    except BaseExceptionGroup as eg:  # the pool's nursery wraps the call's error
        leaf = eg
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


def bucket_record(cluster) -> dict:
    return rpc(cluster, "admin", "coordinator", "GetBucket", {"name": BUCKET})["bucket"]


def test_replica_killed_during_writes_then_replaced(cluster4):
    c = cluster4
    s3 = boto3.client("s3", endpoint_url=c.endpoint, region_name=c.region,
                      aws_access_key_id=c.credentials["access_key_id"],
                      aws_secret_access_key=c.credentials["secret_access_key"],
                      config=Config(retries={"max_attempts": 1}))
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
        "Location": {"Type": "AvailabilityZone", "Name": "use1-az4"},
        "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}})
    before = bucket_record(c)
    names = [r["node_id"] for r in before["replicas"]]
    victim = names[1]
    spare = next(n for n in c.node_names if n not in names)

    acked: dict[str, bytes] = {}
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        rng = random.Random(7)
        i = 0
        while not stop.is_set():
            key, data = f"obj/{i:05d}", rng.randbytes(rng.randint(100, 20_000))
            try:
                s3.put_object(Bucket=BUCKET, Key=key, Body=data)
                acked[key] = data
            except Exception as exc:  # noqa: BLE001 - counted: the test bounds them
                errors.append(f"{key}: {exc}")
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        c.daemons[victim].proc.kill()  # SIGKILL, in the middle of the load
        c.daemons[victim].proc.wait()
        n = len(acked)
        while len(acked) < n + 60 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    assert len(acked) >= n + 60, f"writes did not go on after the replica died: {errors[:3]}"
    assert len(errors) <= 2, errors  # at most the writes caught in the switch

    after = bucket_record(c)
    now = [r["node_id"] for r in after["replicas"]]
    assert after["epoch"] > before["epoch"] and victim not in now
    assert now[0] == names[0] and spare in now and len(now) == 3
    deadline = time.monotonic() + 30  # the spare joined syncing; the primary's copy clears it
    while bucket_record(c)["syncing"]:
        assert time.monotonic() < deadline, "the spare never left syncing"
        time.sleep(0.1)
    after = bucket_record(c)

    for key, data in acked.items():  # through the gateway, byte for byte
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data, key
    # every replica of the new epoch, the replacement included, serves every object
    deadline = time.monotonic() + 30
    for node in now:
        for key, data in acked.items():
            while True:
                try:
                    meta, got = rpc(c, "gateway", node, "GetObject",
                                    {"bucket": BUCKET, "key": key, "bucket_version": after["version"]}, stream=True)
                    break
                except Exception:
                    if node != spare or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)  # the copy to the replacement is still running
            assert got == data, (node, key)
    # a stale epoch is refused by every replica
    with pytest.raises(rpc_errors.Conflict) as ei:
        rpc(c, names[0], now[1], "ReplicaDelete", {"bucket_id": after["bucket_id"], "bucket": BUCKET,
                                                   "epoch": before["epoch"], "key": "obj/00000"})
    assert ei.value.kind == "StaleEpoch"
    # the killed node comes back: it checks its store, and is no longer a replica of the bucket
    c.daemons[victim].start()
    log = c.daemons[victim].log_path.read_text()
    assert "event=store_open" in log
