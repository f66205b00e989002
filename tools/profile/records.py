"""Profiles kept across restarts: the summary an agent read and where the .ncu-rep lies."""

from __future__ import annotations

import time
from pathlib import Path

from kda_mcp.tools.errors import not_found
from kda_mcp.tools.profile.models import ProfileSummary
from kda_mcp.tools.store import Store


class ProfileRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    def new_id(self) -> str:
        return self.store.next_id("p")

    def save(self, summary: ProfileSummary, report: Path) -> None:
        self.store.execute(
            "INSERT INTO profiles(id, created, attempt, definition, solution, report, summary) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (summary.profile_id, time.time(), summary.attempt_id, summary.definition, summary.solution, str(report), summary.model_dump_json(exclude_none=True)),
        )

    def get(self, profile_id: str) -> ProfileSummary:
        rows = self.store.execute("SELECT summary FROM profiles WHERE id = ?", (profile_id,))
        if not rows:
            known = [r["id"] for r in self.store.execute("SELECT id FROM profiles ORDER BY created DESC LIMIT 20")]
            raise not_found("profile", profile_id, known)
        return ProfileSummary.model_validate_json(rows[0]["summary"])
