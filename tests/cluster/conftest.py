"""Real-process cluster fixtures: daemons started as OS processes on 127.0.0.1, port 0.

A cluster is shared by the tests of one module (a sync fixture: pytest-trio's async fixtures are
function-scoped). On failure each daemon's log is printed; set ONEZONE_KEEP_CLUSTER=1 to keep the
data dir for debugging.
"""

import os
import shutil

import boto3
import pytest
from botocore.config import Config

from onezone.cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    data = tmp_path_factory.mktemp("cluster")
    c = LocalCluster(data / "onezone-data", nodes=3, port=0)
    c.start()
    yield c
    c.stop()
    failed = getattr(request.node, "_failed", False)
    if failed:
        for d in c.daemons.values():
            print(f"===== {d.name} log =====\n" + d.log_path.read_text(errors="replace")[-4000:])
    if not os.environ.get("ONEZONE_KEEP_CLUSTER"):
        shutil.rmtree(data, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item.module._failed = True  # noqa: SLF001
        item.parent._failed = True  # noqa: SLF001


def client(cluster, service, *, akid=None, secret=None, **config):
    return boto3.client(
        service, endpoint_url=cluster.endpoint, region_name=cluster.region,
        aws_access_key_id=akid or cluster.credentials["access_key_id"],
        aws_secret_access_key=secret or cluster.credentials["secret_access_key"],
        config=Config(retries={"max_attempts": 1}, **config))
