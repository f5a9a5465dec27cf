"""The bounded per-bucket label: top N buckets by traffic keep their name, the rest are ``other``."""

import pytest
from gateway.metrics import GatewayMetrics
from gateway.topn import OTHER, TopN
from proto.metrics import Metrics


def test_first_buckets_take_free_slots_then_the_rest_is_other():
    t = TopN(2, refresh_every=1000)
    assert t.label("a") == "a"
    assert t.label("b") == "b"
    assert t.label("c") == OTHER
    assert t.label(None) == ""


def test_heavy_hitter_displaces_a_quiet_bucket_at_refresh():
    t = TopN(2, refresh_every=50)
    t.label("quiet-1")
    t.label("quiet-2")
    labels = [t.label("busy") for _ in range(60)]
    assert labels[0] == OTHER
    assert labels[-1] == "busy"  # promoted by the refresh after 50 observations
    assert "busy" in t.top and len(t.top) == 2
    assert t.pop_dropped() and t.pop_dropped() == []


def test_cardinality_stays_bounded_whatever_the_number_of_buckets():
    t = TopN(5, capacity=20, refresh_every=10)
    for i in range(10_000):
        assert t.label(f"bucket-{i}") in t.top | {"other"}
    assert len(t._counts) <= 20  # noqa: SLF001 (the tracker's own memory is bounded too)
    assert len(t.top) <= 5


def test_zero_n_folds_everything():
    t = TopN(0)
    assert t.label("a") == OTHER


@pytest.mark.parametrize("bad", [dict(n=-1), dict(n=1, refresh_every=0)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        TopN(**bad)


def test_gateway_metrics_remove_series_of_demoted_buckets():
    metrics = Metrics("gateway")
    m = GatewayMetrics(metrics, top_buckets=1)
    m.top.refresh_every = 20
    label = m.bucket_label("early")
    m.request_done(operation="GetObject", bucket_label=label, status=200, seconds=0.001, bytes_in=0, bytes_out=10)
    for _ in range(30):
        label = m.bucket_label("busy")
        m.request_done(operation="GetObject", bucket_label=label, status=200, seconds=0.001, bytes_in=1,
                       bytes_out=1)
    text = metrics.exposition().decode()
    assert 'bucket="busy"' in text
    assert 'bucket="early"' not in text
    assert 'bucket="other"' in text
    series = {line.split(" ")[0] for line in text.splitlines()
              if line.startswith("onezone_gateway_requests_total{")}
    assert len(series) == 2
