-- Privacy: the per-media decision of the privacy pass (galprof/privacy.py), the user's
-- marks, and the audit log of every upload to a remote tier.
-- `private` is NULL until the privacy pass has decided; `private_reason` says why
-- (private or public), one reason per line.
ALTER TABLE media ADD COLUMN private INTEGER;
ALTER TABLE media ADD COLUMN private_reason TEXT;

-- A mark matches a media item by path OR by content hash, so that a moved or renamed
-- file stays marked and a re-scan never loses a mark (marks are not tied to media rows).
CREATE TABLE private_marks (
    id           INTEGER PRIMARY KEY,
    path         TEXT NOT NULL,
    content_hash TEXT,
    marked_at    TEXT NOT NULL
);
CREATE INDEX private_marks_path ON private_marks(path);
CREATE INDEX private_marks_hash ON private_marks(content_hash);

-- One row per upload attempt of one media item (a photo, or a video's frames in one
-- request): what left the device, when, how big, to which server, and how it went.
CREATE TABLE uploads (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    path         TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    bytes        INTEGER NOT NULL,              -- total bytes of the images sent
    images       INTEGER NOT NULL DEFAULT 1,    -- 1 for a photo, the frames for a video
    sha256       TEXT,                          -- of the images sent, comma-separated
    server       TEXT NOT NULL,
    status       TEXT NOT NULL                  -- ok | HTTP status | error: reason
);
CREATE INDEX uploads_hash ON uploads(content_hash);
