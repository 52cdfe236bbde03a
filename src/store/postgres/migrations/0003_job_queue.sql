-- The one job queue of every replica on this database (issue 25, item 2). A job's record and
-- history stay in `objects` (`jobs/<id>.json`); this table says who may write them.
--
-- A row is inserted with the queued record, in the same transaction. A replica claims the
-- oldest queued row (`FOR UPDATE SKIP LOCKED`), which takes a fresh `lease_token` from the
-- sequence and a `lease_until` it renews; every write it makes for the job is refused unless
-- the row still holds its token and is `running`. Whoever takes the row away from it (the
-- reaper of an expired lease) draws a new token, which is what fences the old holder.
-- `done` rows stay, so a late writer finds its token stale rather than no row at all.
CREATE SEQUENCE job_lease_tokens;

CREATE TABLE job_queue (
    id               uuid PRIMARY KEY,
    submitted_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done')),
    worker           text,
    lease_token      bigint NOT NULL DEFAULT nextval('job_lease_tokens'),
    lease_until      timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false
);

-- What claims scan (oldest first) and what the reaper scans (expired leases).
CREATE INDEX job_queue_queued ON job_queue (submitted_at, id) WHERE state = 'queued';
CREATE INDEX job_queue_running ON job_queue (lease_until) WHERE state = 'running';
