"""The fake property site that ``message_trace`` scrapes, with a fixed dataset.

- ``/property/ok-*``: 200, a page whose JSON-LD block holds the listing (name, price, rooms).
- ``/property/missing-*``: 404 (the listing is gone: the trace ends ``not_found``).
- ``/property/flaky-*``: 500, every time (retried, then the trace ends ``failed``).
"""

from __future__ import annotations

import json
import zlib

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

app = FastAPI(title="message_trace upstream")


@app.get("/property/{slug}", response_class=HTMLResponse)
def property_page(slug: str) -> str:
    """The page of listing ``slug``, as the dataset above says."""
    if slug.startswith("flaky-"):
        raise HTTPException(500, "upstream error")
    if not slug.startswith("ok-"):
        raise HTTPException(404, "no such listing")
    seed = zlib.crc32(slug.encode())
    listing = {"@type": "Apartment", "name": f"Listing {slug}", "rooms": 1 + seed % 4}
    listing["price"] = 50_000 + seed % 1000 * 1000
    data = json.dumps(listing)
    return f'<html><body><h1>{slug}</h1><script type="application/ld+json">{data}</script>'
