-- galprof store, schema version 1. One SQLite file (WAL mode); every table is plain SQL so
-- that `sqlite3 galprof.db` is a fine way to look inside. Later versions are the numbered
-- files beside this one (0002_people.sql, ...), applied in order by store/db.py and recorded
-- in the `migrations` table (name, applied_at); PRAGMA user_version is the number applied.
-- Paths are TEXT, or the raw bytes as a BLOB for a name that is not valid UTF-8.

-- One row per media item found under a scanned root. A Live Photo is one photo whose
-- motion part is `motion_path`. `content_hash` recognises a moved or renamed file.
CREATE TABLE media (
    id               INTEGER PRIMARY KEY,
    path             TEXT NOT NULL UNIQUE,      -- absolute path
    root             TEXT NOT NULL,             -- the scanned root it was found under
    size             INTEGER NOT NULL,
    mtime_ns         INTEGER NOT NULL,
    content_hash     TEXT,                      -- blake2b of the bytes (gallery/hashing.py; 0004)
    kind             TEXT,                      -- 'photo' | 'video' | NULL (unrecognised)
    format           TEXT,                      -- JPEG, HEIF, PNG, MP4, MOV, MKV, ...
    motion_path      TEXT,                      -- Live Photo video part
    width            INTEGER,                   -- as displayed (orientation applied)
    height           INTEGER,
    taken_at         TEXT,                      -- ISO 8601, with UTC offset when known
    make             TEXT,
    model            TEXT,
    lens_model       TEXT,
    focal_length     REAL,                      -- mm
    focal_length_35mm REAL,
    orientation      INTEGER,                   -- EXIF 1-8
    gps_lat          REAL,                      -- NULL when missing or invalid
    gps_lon          REAL,
    gps_alt          REAL,
    duration         REAL,                      -- seconds (videos)
    fps              REAL,
    rotation         INTEGER,                   -- degrees counter-clockwise (videos)
    front_camera     INTEGER NOT NULL DEFAULT 0, -- lens model names a front camera
    selfie           INTEGER NOT NULL DEFAULT 0, -- front camera, or shortest focal length rule
    selfie_reason    TEXT,
    status           TEXT NOT NULL DEFAULT 'pending', -- ok | warning | failed (unreadable)
    error            TEXT,                      -- why it failed or what the warning is
    scanned_at       TEXT
);
CREATE INDEX media_hash ON media(content_hash);
CREATE INDEX media_root ON media(root);

-- The frames that were analysed: one for a photo, the sampled ones for a video.
CREATE TABLE frames (
    media_id   INTEGER NOT NULL REFERENCES media(id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,                -- frame number in the video (0 for a photo)
    timestamp  REAL,                            -- seconds from the start
    width      INTEGER,
    height     INTEGER,
    PRIMARY KEY (media_id, idx)
);

-- Per-stage results, cached by content (so a moved file keeps them) and by the stage's
-- version (so a new model re-runs only its stage). `payload` is JSON; `arrays` holds the
-- numpy arrays of the payload (e.g. face features) as an .npz BLOB and can be purged.
CREATE TABLE results (
    content_hash TEXT NOT NULL,
    stage        TEXT NOT NULL,
    version      TEXT NOT NULL,
    payload      TEXT NOT NULL,
    arrays       BLOB,
    tier         TEXT NOT NULL DEFAULT 'device', -- 'device' or 'remote'
    created_at   TEXT NOT NULL,
    PRIMARY KEY (content_hash, stage)
);

-- Problems met while scanning, one line each (the newest per media is also media.error);
-- `galprof errors` lists the failures that hold now (media.status, results.error).
CREATE TABLE errors (
    id       INTEGER PRIMARY KEY,
    path     TEXT NOT NULL,
    stage    TEXT NOT NULL,                     -- walk | read | <stage name>
    message  TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX errors_path ON errors(path);

-- One row per scan run, with its summary (what `scan --json` printed).
CREATE TABLE scans (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    roots       TEXT NOT NULL,                  -- JSON list
    summary     TEXT                            -- JSON
);
