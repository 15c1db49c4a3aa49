-- People: faces materialised from the "faces" stage results by the people pass, and the
-- persons they were clustered into. `manual` marks what the user decided (a name, a merge,
-- a split): the people pass never undoes it. Face features are float32 BLOBs of the HSE
-- identity vector; `galprof people purge` sets them to NULL.
CREATE TABLE people (
    id          INTEGER PRIMARY KEY,
    name        TEXT,
    manual      INTEGER NOT NULL DEFAULT 0,
    centroid    BLOB,                           -- mean identity feature (float32, L2-normalised)
    created_at  TEXT NOT NULL
);

CREATE TABLE faces (
    id          INTEGER PRIMARY KEY,
    media_id    INTEGER NOT NULL REFERENCES media(id) ON DELETE CASCADE,
    frame_idx   INTEGER NOT NULL,
    face_idx    INTEGER NOT NULL,               -- position in the frame's stage payload
    track       INTEGER,                        -- face track within a video
    box         TEXT NOT NULL,                  -- JSON [x1, y1, x2, y2], original pixels
    score       REAL,
    age         REAL,
    male_prob   REAL,
    features    BLOB,                           -- NULL when too small for identity, or purged
    person_id   INTEGER REFERENCES people(id) ON DELETE SET NULL,
    manual      INTEGER NOT NULL DEFAULT 0,     -- person_id set by the user
    UNIQUE (media_id, frame_idx, face_idx)
);
CREATE INDEX faces_person ON faces(person_id);

-- Which faces result each media's rows were made from (content hash and stage version),
-- so the people pass only re-reads what changed.
CREATE TABLE people_sync (
    media_id    INTEGER PRIMARY KEY REFERENCES media(id) ON DELETE CASCADE,
    value       TEXT NOT NULL
);
