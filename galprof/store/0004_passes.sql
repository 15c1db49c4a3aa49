-- The gallery passes (galprof/pipeline/passes.py) and what they found. Each pass records a
-- fingerprint of its inputs (the rows it reads and the settings it uses), written in the
-- same transaction as its results, so a pass runs again exactly when its inputs changed,
-- also after a scan was killed between ingest and the passes.
CREATE TABLE passes (
    name         TEXT PRIMARY KEY,              -- selfies | people | privacy | places | descriptor
    fingerprint  TEXT NOT NULL,
    output       TEXT,                          -- JSON: what the pass found (see passes.py)
    computed_at  TEXT NOT NULL
);

-- A stage that failed on a media item is recorded as a result with `error` set, at the
-- stage's version: it is reported once, not retried by every scan, and retried when the
-- stage's version changes (a new model or code revision).
ALTER TABLE results ADD COLUMN error TEXT;

-- 1: the 0.1.0 content hash (size + head/middle/tail chunks of files over 768 KB);
-- 2: size + every byte. Version-1 rows are re-hashed once by the next scan.
ALTER TABLE media ADD COLUMN hash_scheme INTEGER NOT NULL DEFAULT 1;

-- Where each media item with GPS was taken (places pass: offline reverse geocoding).
-- `city` and `admin1` are NULL for a country-level fallback.
CREATE TABLE places (
    media_id     INTEGER PRIMARY KEY REFERENCES media(id) ON DELETE CASCADE,
    city         TEXT,
    admin1       TEXT,
    country      TEXT NOT NULL,
    country_code TEXT NOT NULL,
    lat          REAL NOT NULL,                 -- of the place chosen
    lon          REAL NOT NULL,
    distance_km  REAL NOT NULL                  -- from the photo to that place
);

-- An upload is logged as 'sending' before its bytes leave, and completed afterwards, so a
-- client killed mid-upload still leaves its row.
