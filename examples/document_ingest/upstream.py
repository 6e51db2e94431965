"""The fake document store that ``document_ingest`` downloads from, with a fixed dataset.

- ``GET /documents/{name}``: the document's text, one paragraph per chunk; a number in the
  name is its paragraph count (``handbook-400.pdf`` has 400), else 12.
- A name containing ``corrupt`` is served as bytes that are not text: the parse stage fails.
- A name containing ``flaky`` answers 503 to its first download, then the text (a transient
  failure, retried).
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Response

app = FastAPI(title="document_ingest upstream")
_refused: set[str] = set()


def paragraphs_of(name: str) -> int:
    """How many paragraphs the document ``name`` has."""
    found = re.search(r"\d+", name)
    return int(found.group()) if found else 12


@app.get("/documents/{name}")
def document(name: str) -> Response:
    """The document ``name``, as the dataset above says."""
    if "flaky" in name and name not in _refused:
        _refused.add(name)
        return Response("busy, try again", status_code=503)
    if "corrupt" in name:
        return Response(b"\xff\xfe\x00corrupt\x80", media_type="application/octet-stream")
    text = "\n\n".join(
        f"{name}, paragraph {n}: " + " ".join(f"term{(n * 7 + k) % 97}" for k in range(40))
        for n in range(1, paragraphs_of(name) + 1)
    )
    return Response(text, media_type="text/plain")
