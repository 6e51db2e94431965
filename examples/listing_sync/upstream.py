"""The fake "insights API" the listing sync reads, with a fixed dataset and deterministic faults.

- ``GET /listings`` and ``GET /listings/{id}/insights`` need ``Authorization: Bearer KEY``: a
  key starting with ``valid-`` is accepted, anything else is a 401.
- ``valid-empty`` has no listings; every other valid key sees ``L01`` … ``L10``.
- Faults, counted per key: ``L03`` and ``L07`` always answer 500; ``L05`` answers 429 with
  ``Retry-After: 1`` on its first call; ``L09`` answers 503 on its first two calls.
- Slow responses: keys starting with ``valid-slow`` get each insights answer after 0.1 s.

Serve it with ``uvicorn examples.listing_sync.upstream:app --port 8001``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, timedelta
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse

NAMES = [
    "Harbour View Loft",
    "Old Town Studio",
    "Garden Cottage",
    "Riverside Flat",
    "Hilltop Cabin",
    "Canal House",
    "Beach Bungalow",
    "City Penthouse",
    "Forest Lodge",
    "Market Square Room",
]
LISTINGS = {f"L{n:02d}": name for n, name in enumerate(NAMES, 1)}
DAYS = [date(2026, 1, 1) + timedelta(days=n) for n in range(7)]
ALWAYS_FAILING = {"L03", "L07"}
SLOW = 0.1

app = FastAPI(title="Fake insights API")
calls: Counter[tuple[str, str]] = Counter()  # (key, listing) -> calls so far


def api_key(authorization: str | None) -> str:
    """The caller's key, or a 401 unless it starts with ``valid-``."""
    key = (authorization or "").removeprefix("Bearer ")
    if not key.startswith("valid-"):
        raise HTTPException(401, "invalid API key")
    return key


@app.get("/listings")
def listings(authorization: Annotated[str | None, Header()] = None) -> dict[str, object]:
    key = api_key(authorization)
    shown = {} if key == "valid-empty" else LISTINGS
    return {"listings": [{"id": id_, "name": name} for id_, name in shown.items()]}


@app.get("/listings/{listing_id}/insights", response_model=None)
async def insights(
    listing_id: str, authorization: Annotated[str | None, Header()] = None
) -> JSONResponse | dict[str, object]:
    key = api_key(authorization)
    if listing_id not in LISTINGS or key == "valid-empty":
        raise HTTPException(404, f"no listing {listing_id}")
    if key.startswith("valid-slow"):
        await asyncio.sleep(SLOW)
    calls[key, listing_id] += 1
    call = calls[key, listing_id]
    if listing_id in ALWAYS_FAILING:
        return JSONResponse({"detail": "internal error"}, status_code=500)
    if listing_id == "L05" and call == 1:
        return JSONResponse({"detail": "slow down"}, status_code=429, headers={"Retry-After": "1"})
    if listing_id == "L09" and call <= 2:
        return JSONResponse({"detail": "try again"}, status_code=503)
    n = int(listing_id[1:])
    daily = [
        {"date": day.isoformat(), "views": 10 * n + i, "bookings": (n + i) % 3, "revenue": 50.0 * n}
        for i, day in enumerate(DAYS)
    ]
    return {"listing_id": listing_id, "daily": daily}
