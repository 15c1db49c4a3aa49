-- A mark can also make an item public: the user's choice wins over the automatic rules
-- (faces, documents, screenshots) both ways. `public` = 1 for such a mark.
ALTER TABLE private_marks ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
