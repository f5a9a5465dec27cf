"""A node whose disk really fills up (its data directory on a small tmpfs, another process
taking the space: a real ENOSPC from the kernel, not the node's reserve), end to end with real
processes and real boto3: PutObject gets 503 SlowDown naming the full node (never a 500),
nothing is stored, earlier objects still read back byte for byte, the node reports itself full
so placement avoids it, and once space is freed writes go through again; a restart finds the
store intact. Needs root to mount the tmpfs (skips with the reason otherwise)."""

import random
import shutil
import urllib.request

import pytest

from tests.cluster.conftest import client
from tests.cluster.test_repair_failover import (DIR_CONFIG, ZONE, ids, make_cluster, read_from, record, rpc,
                                                set_node_option, wait_for)
from tests.tmpfs import fill, mounted_tmpfs

pytestmark = [pytest.mark.cluster, pytest.mark.fault]

MIB = 1024 * 1024


def free_bytes(c, node):
    return {n["node_id"]: n for n in rpc(c, "admin", "coordinator", "ListNodes", {})["nodes"]}[node]["free_bytes"]


def test_a_really_full_disk_answers_503_naming_the_node_and_keeps_the_store_intact(tmp_path):
    c = make_cluster(tmp_path, 4)
    try:
        s3 = client(c, "s3")
        name = f"disk--{ZONE}--x-s3"
        s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
        primary = ids(record(c, name))[0]
        # move the primary's data directory onto a 24 MiB tmpfs (capacity = the tmpfs, no reserve)
        c.daemons[primary].stop()
        data = c.data_dir / primary
        shutil.move(data, tmp_path / "saved")
        with mounted_tmpfs(data, "24m"):
            for entry in (tmp_path / "saved").iterdir():
                shutil.move(entry, data / entry.name)
            set_node_option(c, primary, f"capacity_bytes = {24 * MIB}")
            set_node_option(c, primary, "reserve_bytes = 0")
            c.restart(primary)
            rng = random.Random(3)
            objects = {f"before/{i}": rng.randbytes(rng.choice([100, 5000, 200_000])) for i in range(8)}
            for key, body in objects.items():
                s3.put_object(Bucket=name, Key=key, Body=body)
            # another process takes the disk, leaving 600 KiB: above the node's full threshold (1% of
            # 24 MiB), so the write starts, and the kernel's ENOSPC stops it (3 MiB: more than the
            # zeros the log has preallocated, which a small write would still have fitted in)
            filler = fill(data, leave=600 * 1024)
            with pytest.raises(Exception) as e:
                s3.put_object(Bucket=name, Key="refused", Body=rng.randbytes(3 * MIB))
            err = e.value.response
            assert err["ResponseMetadata"]["HTTPStatusCode"] == 503 and err["Error"]["Code"] == "SlowDown", err
            assert "out of disk space" in err["Error"]["Message"] and primary in err["Error"]["Message"]
            failed = [line for line in c.daemons[primary].log_path.read_text().splitlines()
                      if "event=local_write_failed" in line]
            assert failed and "No space left on device" in failed[0], failed  # the kernel's ENOSPC, not the reserve
            metrics = urllib.request.urlopen(f"http://{c.daemons[primary].info['metrics']}/metrics").read().decode()
            assert any(line.startswith("onezone_node_no_space_errors ") and float(line.split()[1]) >= 1
                       for line in metrics.splitlines()), "no onezone_node_no_space_errors"
            with pytest.raises(Exception) as e:
                s3.head_object(Bucket=name, Key="refused")  # nothing was stored
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
            # the node now reports itself full: placement avoids it, and new writes are refused at once
            wait_for(lambda: free_bytes(c, primary) == 0, what="the full node's heartbeat")
            for i in range(3):
                other = f"new{i}--{ZONE}--x-s3"
                s3.create_bucket(Bucket=other, CreateBucketConfiguration=DIR_CONFIG)
                assert primary not in ids(record(c, other)), other
            with pytest.raises(Exception) as e:
                s3.put_object(Bucket=name, Key="small", Body=b"x" * 100)
            assert e.value.response["Error"]["Code"] == "SlowDown" and primary in e.value.response["Error"]["Message"]
            for key, body in objects.items():  # the cluster keeps serving reads
                assert s3.get_object(Bucket=name, Key=key)["Body"].read() == body
                assert read_from(c, primary, name, key, record(c, name)["version"]) == body
            # space freed: the node has room again and takes writes
            filler.unlink()
            wait_for(lambda: free_bytes(c, primary) > MIB, what="the freed node's heartbeat")
            s3.put_object(Bucket=name, Key="after", Body=b"y" * 5000)
            objects["after"] = b"y" * 5000
            c.restart(primary)  # the start check finds the store intact
            text = c.daemons[primary].log_path.read_text()
            opened = [line for line in text.splitlines() if "event=store_open" in line][-1]
            assert "missing=0" in opened and "truncated_bytes=0" in opened, opened
            rec = record(c, name)
            assert ids(rec)[0] == primary
            for key, body in objects.items():
                assert read_from(c, primary, name, key, rec["version"]) == body
            c.daemons[primary].stop()
    finally:
        c.stop()
