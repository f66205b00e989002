"""The dashboard's static files (static/*.css, *.js), shipped as package data: no build step, no CDN.

Each URL carries the file's content hash (?v=...), so browsers may keep a file until it changes.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from kda_mcp.server.dashboard.auth import STATIC_PREFIX

TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


@cache
def assets() -> dict[str, tuple[bytes, str, str]]:
    """name -> (content, media type, content hash) for every file of static/."""
    out = {}
    folder = resources.files("kda_mcp.server.dashboard").joinpath("static")
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in TYPES:
            data = entry.read_bytes()
            out[entry.name] = (data, TYPES[suffix], hashlib.sha256(data).hexdigest()[:12])
    return out


def asset_url(name: str) -> str:
    return f"{STATIC_PREFIX}{name}?v={assets()[name][2]}"
