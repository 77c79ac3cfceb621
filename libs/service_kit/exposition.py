"""How every process of the platform exposes its Prometheus metrics: the chassis' operations
server (chassis/operations.py) and the gateway's /metrics route answer with `render`, and each
process calls `without_created_series` as it starts (chassis/runner.py, the gateway's
__main__.py).

- No `_created` series: prometheus_client would add one per counter and histogram child (its
  creation time as a sample), doubling the series Prometheus stores for nothing the rules or
  the dashboard read.
- OpenMetrics when the scraper's Accept asks for it (Prometheus does, first), the classic text
  format otherwise (curl, older scrapers). The answer depends on Accept, so it says so (Vary).
"""

from prometheus_client import REGISTRY, disable_created_metrics
from prometheus_client.exposition import choose_encoder

VARY = ("Vary", "Accept")


def without_created_series() -> None:
    """Stop exposing `<name>_created` samples in this process (any time before a scrape: the
    client checks at each collection)."""
    disable_created_metrics()


def render(accept: str | None, registry=REGISTRY) -> tuple[bytes, str]:
    """(body, content type) of the registry's metrics in the format `accept` asks for."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
