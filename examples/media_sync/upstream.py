"""The fake media client the media sync reads: a fixed library of 12 items.

- ``GET /items`` lists the 12 items (``m01`` … ``m12``, with titles).
- ``GET /items/{id}`` fetches one item to process it, after ``MEDIA_SYNC_ITEM_DELAY`` seconds
  (default 0.5, so a run can be watched).
- ``MEDIA_SYNC_FAIL_AFTER=N`` makes the client fail (HTTP 500) at item N.

Serve it with ``uvicorn examples.media_sync.upstream:app --port 8001``.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI, HTTPException

TITLES = [
    "Blue Planet",
    "City Lights",
    "Desert Song",
    "Evening Tide",
    "First Snow",
    "Golden Hour",
    "Harbour Nights",
    "Island Winds",
    "June Rain",
    "Kite Festival",
    "Long Road",
    "Morning Fog",
]
ITEMS = [{"id": f"m{n:02d}", "title": title} for n, title in enumerate(TITLES, 1)]

app = FastAPI(title="Fake media client")


@app.get("/items")
def items() -> dict[str, object]:
    return {"items": ITEMS}


@app.get("/items/{item_id}")
async def item(item_id: str) -> dict[str, object]:
    found = next((i for i in ITEMS if i["id"] == item_id), None)
    if found is None:
        raise HTTPException(404, f"no item {item_id}")
    await asyncio.sleep(float(os.environ.get("MEDIA_SYNC_ITEM_DELAY", "0.5")))
    number = ITEMS.index(found) + 1
    if str(number) == os.environ.get("MEDIA_SYNC_FAIL_AFTER"):
        raise HTTPException(500, f"media client failed at item {number}")
    return found | {"bytes": 1_000_000 * number}
