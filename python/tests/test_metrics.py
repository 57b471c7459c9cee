"""``GET /metrics`` is valid Prometheus text: read back with the Prometheus project's own parser
(prometheus-client), from a real gateway after real traffic, and from label values a key id
could hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gateway_client import call, send
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from servers import Server, start_gateway

from signgate import Signer
from signgate.gateway.metrics import Metrics

SECRET = "metrics-test-secret"
KEY = ["--id", "app", "--secret-env", "GW_SECRET", "--allow-private-upstreams"]

FAMILIES = {
    "signgate_requests": "counter",
    "signgate_streams_in_flight": "gauge",
    "signgate_bytes_in": "counter",
    "signgate_bytes_out": "counter",
    "signgate_tasks": "gauge",
    "signgate_tokens": "counter",
    "signgate_store_errors": "counter",
    "signgate_usage_webhook_failures": "counter",
    "signgate_usage_webhook_dropped": "counter",
    "signgate_config_reloads": "counter",
    "signgate_streams_revoked": "counter",
    "signgate_upstream_duration_seconds": "histogram",
    "signgate_upstream_ttfb_seconds": "histogram",
}


@pytest.fixture(scope="module")
def gateway(upstream: Server) -> Iterator[Server]:
    server = start_gateway(*KEY, "--limit", "user.tokens_per_day=1000000", env={"GW_SECRET": SECRET})
    yield server
    server.stop()


def parse(text: str) -> dict[str, tuple[str, list[Sample]]]:
    return {family.name: (family.type, family.samples) for family in text_string_to_metric_families(text)}


def check_histogram(samples: list[Sample]) -> None:
    buckets = [s for s in samples if s.name.endswith("_bucket")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts), "bucket counts must not fall as the bound grows"
    assert buckets[-1].labels["le"] == "+Inf"
    (count,) = [s.value for s in samples if s.name.endswith("_count")]
    assert counts[-1] == count


def test_metrics_after_traffic_are_valid_prometheus_text(gateway: Server, upstream: Server) -> None:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "count to ten"}]}
    signer = Signer("app", SECRET, gateway.url)
    assert send(signer.sign("POST", f"{upstream.url}/v1/chat/completions?pieces=3", json=body, user="u")).status == 200
    assert call("GET", gateway.url + "/?X-Sw-Credential=nobody").status == 400  # a refusal, counted too

    reply = call("GET", gateway.url + "/metrics")
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = parse(reply.body.decode())

    assert {name: kind for name, (kind, _) in families.items()} == FAMILIES
    _, requests = families["signgate_requests"]
    outcomes = {(s.labels["code"], s.labels["status"]): s.value for s in requests}
    assert outcomes[("ok", "200")] >= 1
    assert sum(v for (code, _), v in outcomes.items() if code != "ok") >= 1
    _, tokens = families["signgate_tokens"]
    kinds = {(s.labels["key"], s.labels["kind"], s.labels["estimated"]) for s in tokens}
    assert {("app", "prompt", "false"), ("app", "completion", "false")} <= kinds
    for name in ("signgate_upstream_duration_seconds", "signgate_upstream_ttfb_seconds"):
        check_histogram(families[name][1])
    workers = {s.labels["worker"] for _, samples in families.values() for s in samples}
    assert len(workers) == 1


def test_label_values_a_key_id_could_hold_are_escaped() -> None:
    metrics = Metrics()
    awkward = 'a"b\\c\nd'
    metrics.tokens[(awkward, True)] = [3, 4]
    metrics.requests[("ok", 200)] = 1
    metrics.upstream_duration.observe(0.2)
    families = parse(metrics.render())
    _, tokens = families["signgate_tokens"]
    assert {(s.labels["key"], s.labels["kind"], s.value) for s in tokens} == {
        (awkward, "prompt", 3.0),
        (awkward, "completion", 4.0),
    }
    check_histogram(families["signgate_upstream_duration_seconds"][1])
