"""``hallgate serve`` freezes the heap it started with (gc.freeze), so the collector's full
passes skip the libraries' and detectors' objects; apps made for tests do not."""

from __future__ import annotations

import gc

from proxy.app import create_app
from tests.conftest import fake_settings


async def test_a_serving_gateway_has_frozen_its_start_up_heap(fake_upstream):
    gc.unfreeze()
    try:
        plain = create_app(fake_settings(fake_upstream))
        async with plain.router.lifespan_context(plain):
            assert gc.get_freeze_count() == 0
        app = create_app(fake_settings(fake_upstream), freeze_heap=True)
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000  # torch, HALT, FastAPI, ... are frozen
    finally:
        gc.unfreeze()
