-- Every stored object under its store key, as the data directory keeps one file a key:
-- `datasets/<id>.json`, `models/<id>.json`, `versions/<model id>/<v>.json` and `.safetensors`,
-- `jobs/<id>.json`, `experiments/<id>.json`. Values are the bytes the layers above wrote (JSON
-- records in their checksummed envelope, weights as safetensors), never parsed here.
--
-- `key` sorts bytewise (COLLATE "C"), as the store's listings must, and its primary-key index
-- serves the prefix scans of `list` (`key LIKE 'versions/<id>/%'`). `kind` is the key's first
-- segment, kept for what the later migrations of issue 25 add beside this table (a job queue,
-- name constraints, notifications by kind).
CREATE TABLE objects (
    key        text COLLATE "C" PRIMARY KEY
               CHECK (key <> '' AND left(key, 1) <> '/'),
    kind       text COLLATE "C" NOT NULL GENERATED ALWAYS AS (split_part(key, '/', 1)) STORED,
    value      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What readiness writes (`Store::probe`), at most once a second a replica: one row, updated
-- in place, so a database that takes no writes (read-only, disk full) makes `/readyz` 503.
CREATE TABLE store_probe (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    probed_at timestamptz NOT NULL
);
INSERT INTO store_probe (probed_at) VALUES (now());
