"""SQL of the `passes` table (what each gallery pass was computed from and found) and of
the `places` table the places pass fills."""

from __future__ import annotations

import json

from galprof.store.db import now, path_from_db


class PassTable:
    def __init__(self, store):
        self.store = store

    @property
    def conn(self):
        return self.store.conn

    def state(self, name: str) -> tuple[str | None, dict | None]:
        """(fingerprint, output) the pass recorded last, or (None, None)."""
        row = self.conn.execute("SELECT fingerprint, output FROM passes WHERE name = ?",
                                (name,)).fetchone()
        if row is None:
            return None, None
        return row[0], json.loads(row[1]) if row[1] else None

    def output(self, name: str) -> dict | None:
        return self.state(name)[1]

    def record(self, name: str, fingerprint: str, output: dict | None) -> None:
        """Call inside the transaction that wrote the pass's results."""
        self.conn.execute(
            "INSERT OR REPLACE INTO passes (name, fingerprint, output, computed_at) "
            "VALUES (?, ?, ?, ?)", (name, fingerprint, json.dumps(output, default=str), now()))

    def invalidate(self, *names: str) -> None:
        self.conn.executemany("DELETE FROM passes WHERE name = ?", [(n,) for n in names])

    # -- places
    def replace_places(self, rows: list[tuple]) -> None:
        """(media id, city, admin1, country, country code, lat, lon, distance km)."""
        self.conn.execute("DELETE FROM places")
        self.conn.executemany("INSERT INTO places (media_id, city, admin1, country, country_code,"
                              " lat, lon, distance_km) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def places(self) -> list[dict]:
        """Every located present media item with its place (for the profile)."""
        return [dict(r, path=path_from_db(r["path"])) for r in self.conn.execute(
            "SELECT m.path, m.kind, m.taken_at, p.city, p.admin1, p.country, p.country_code,"
            " p.lat, p.lon, p.distance_km FROM places p JOIN media m ON m.id = p.media_id"
            " WHERE m.status != 'failed' ORDER BY m.id")]
