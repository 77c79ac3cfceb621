"""Metric labels take a bounded set of values, whatever clients send: each label value is a
series Prometheus keeps, and anyone, unauthenticated, can send requests."""

import random
import string

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(60)


def request_series(client) -> set[tuple]:
    metrics = client.get("/metrics").text
    return {tuple(sorted(sample.labels.items()))
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples if sample.name == "gateway_http_requests_total"}


def random_method() -> str:
    return "".join(random.choices(string.ascii_uppercase + string.digits, k=8))


def test_random_http_methods_do_not_create_metric_series_without_bound(gateway):
    with gateway.client() as client:
        request_series(client)  # its own series, from here on
        for _ in range(5):
            client.request(random_method(), "/api/v1/units")
            client.request(random_method(), f"/no/such/path/{random_method()}")
        series = request_series(client)
        for _ in range(25):
            assert client.request(random_method(), "/api/v1/units").status_code == 405
            assert client.request(random_method(), f"/no/such/path/{random_method()}").status_code == 404
        assert request_series(client) == series
    methods = {dict(labels)["method"] for labels in series}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
