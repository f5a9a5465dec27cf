"""``onezone up``: start a local cluster (KMS, coordinator, N nodes, gateway) and keep it running.

Prints the endpoint, the admin credentials and copy-paste boto3 / aws CLI examples; Ctrl-C (or
SIGTERM) stops every process it started. The data dir is reused on the next start: same
certificates, keys, credentials and objects.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from onezone.cluster import LocalCluster
from onezone.prom import find_binary, for_cluster

BANNER = """\
onezone is up: KMS, coordinator, {nodes} nodes in zone {zone}, gateway.

  endpoint           {endpoint}
  region             {region}
  access key id      {akid}
  secret access key  {secret}
  cluster file       {data_dir}/cluster.json   (mode 0600; metrics URLs for Prometheus too)
  logs               {data_dir}/logs/   (S3 audit log: {data_dir}/gateway/audit.jsonl)
{prometheus}
Try it with the aws CLI (pip install awscli; `python3 dev.py test` puts one in .venv/bin):

  export AWS_ACCESS_KEY_ID={akid} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION={region}
  aws --endpoint-url {endpoint} kms create-key --description demo
  aws --endpoint-url {endpoint} s3api create-bucket --bucket demo--{zone}--x-s3 \\
      --create-bucket-configuration 'Location={{Type=AvailabilityZone,Name={zone}}},Bucket={{DataRedundancy=SingleAvailabilityZone,Type=Directory}}'
  echo hello > hello.txt
  aws --endpoint-url {endpoint} s3api put-object --bucket demo--{zone}--x-s3 --key hello.txt --body hello.txt
  aws --endpoint-url {endpoint} s3api get-object --bucket demo--{zone}--x-s3 --key hello.txt out.txt

or with boto3:

  import boto3
  s3 = boto3.client("s3", endpoint_url="{endpoint}", region_name="{region}",
                    aws_access_key_id="{akid}", aws_secret_access_key="{secret}")
  s3.create_bucket(Bucket="demo--{zone}--x-s3", CreateBucketConfiguration={{
      "Location": {{"Type": "AvailabilityZone", "Name": "{zone}"}},
      "Bucket": {{"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}}})
  s3.put_object(Bucket="demo--{zone}--x-s3", Key="hello.txt", Body=b"hello")
  print(s3.get_object(Bucket="demo--{zone}--x-s3", Key="hello.txt")["Body"].read())

Use the IP address (http://127.0.0.1:...), not "localhost": with a host name boto3 switches
directory buckets to virtual-host addressing (<bucket>.localhost), which does not resolve.
Press Ctrl-C to stop the cluster.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="onezone up", description="Start a local onezone cluster and keep it running.")
    p.add_argument("--data-dir", type=Path, default=Path("onezone-data"), help="state directory (default ./onezone-data)")
    p.add_argument("--nodes", type=int, default=3, help="number of storage nodes (default 3)")
    p.add_argument("--zone", default="use1-az4", help="zone id of the nodes (default use1-az4)")
    p.add_argument("--host", default="127.0.0.1", help="address every daemon binds (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9000, help="gateway port (default 9000; 0 picks a free one)")
    p.add_argument("--region", default="us-east-1", help="region name clients sign with (default us-east-1)")
    p.add_argument("--log-format", choices=("kv", "json"), default="kv",
                   help="daemon log lines: key=value (default) or one JSON object per line")
    p.add_argument("--with-prometheus", action="store_true",
                   help="also run Debian's prometheus binary (apt-get install prometheus) scraping every daemon, "
                        "with the alert rules of ops/alerts.yml; its TSDB lives in DATA_DIR/prometheus")
    p.add_argument("--prometheus-port", type=int, default=9090,
                   help="port of Prometheus's web UI and API (default 9090; 0 picks a free one)")
    args = p.parse_args(argv)
    if args.nodes < 1:
        p.error("--nodes must be at least 1")
    if args.with_prometheus and find_binary() is None:
        p.error("--with-prometheus needs Debian's prometheus binary (apt-get install prometheus); not found on PATH")
    cluster = LocalCluster(args.data_dir, nodes=args.nodes, zone=args.zone, host=args.host, port=args.port,
                           region=args.region, log_json=args.log_format == "json")
    stop = {"now": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    prom = None
    try:
        cluster.start()
        if args.with_prometheus:
            prom = for_cluster(cluster.data_dir, host=args.host, port=args.prometheus_port)
            prom.start()
    except Exception as exc:
        print(f"onezone up: {exc}", file=sys.stderr)
        cluster.stop()
        return 1
    prom_line = (f"  prometheus         {prom.url}   (config {prom.config}; Grafana dashboard: "
                 f"ops/grafana/onezone-dashboard.json)\n" if prom else "")
    print(BANNER.format(prometheus=prom_line, nodes=args.nodes, zone=args.zone, endpoint=cluster.endpoint, region=args.region,
                        akid=cluster.credentials["access_key_id"], secret=cluster.credentials["secret_access_key"],
                        data_dir=cluster.data_dir), flush=True)
    try:
        while not stop["now"]:
            for d in cluster.daemons.values():
                if not d.alive():
                    print(f"onezone up: {d.name} exited unexpectedly; see {d.log_path}", file=sys.stderr)
                    stop["now"] = True
            if prom is not None and not prom.alive():
                print(f"onezone up: prometheus exited unexpectedly; see {prom.log_path}", file=sys.stderr)
                prom = None
            time.sleep(0.2)
    finally:
        print("stopping...", flush=True)
        if prom is not None:
            prom.stop()
        cluster.stop()
    return 0
