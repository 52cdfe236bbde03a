-- What lets every replica follow the others' writes (see `src/store/postgres/follow.rs`), and
-- the model names they share.
--
-- Each write of a key gets a new `revision` from one sequence, and each delete leaves a row
-- in `object_deletions` with a revision of its own, so a replica that remembers the revision
-- of every key it has applied can tell a change from one it has seen. Triggers set them
-- whatever statement writes (the store's upsert, a job's fenced write), with the writing
-- replica, and send the change's revision, writer and key on the channel `mlp_lab_changes`
-- (delivered at commit, to the replicas that LISTEN). `updated_at` is the writing
-- transaction's start, and the indexes on it serve the poll that catches what a lost
-- notification did not carry.
CREATE SEQUENCE object_revisions;

ALTER TABLE objects ADD COLUMN revision bigint NOT NULL DEFAULT nextval('object_revisions');
-- The replica whose connection wrote the row last: each sets `mlp_lab.writer` on its
-- connections, so that it can skip its own changes, whatever statement made them.
ALTER TABLE objects ADD COLUMN writer text;
-- Set by a write that must not replace a value (`Store::put_new`), so that the same write,
-- made again after its answer was lost, knows its own row.
ALTER TABLE objects ADD COLUMN put_token text;
CREATE INDEX objects_by_update ON objects (updated_at);

CREATE TABLE object_deletions (
    key        text COLLATE "C" PRIMARY KEY,
    revision   bigint NOT NULL DEFAULT nextval('object_revisions'),
    writer     text,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX object_deletions_by_time ON object_deletions (deleted_at);

CREATE FUNCTION objects_revise() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.revision := nextval('object_revisions');
        NEW.updated_at := now();
    END IF;
    NEW.writer := current_setting('mlp_lab.writer', true);
    RETURN NEW;
END
$$;

CREATE TRIGGER objects_revise BEFORE INSERT OR UPDATE ON objects
    FOR EACH ROW EXECUTE FUNCTION objects_revise();

-- The payload: `<revision> <writer or -> <key>`.
CREATE FUNCTION objects_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gone bigint;
    writer text := coalesce(nullif(current_setting('mlp_lab.writer', true), ''), '-');
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO object_deletions (key, writer) VALUES (OLD.key, writer)
            ON CONFLICT (key) DO UPDATE
            SET revision = nextval('object_revisions'), writer = EXCLUDED.writer,
                deleted_at = now()
            RETURNING revision INTO gone;
        PERFORM pg_notify('mlp_lab_changes', gone || ' ' || writer || ' ' || OLD.key);
        RETURN OLD;
    END IF;
    DELETE FROM object_deletions WHERE key = NEW.key;
    PERFORM pg_notify('mlp_lab_changes', NEW.revision || ' ' || writer || ' ' || NEW.key);
    RETURN NEW;
END
$$;

CREATE TRIGGER objects_changed AFTER INSERT OR UPDATE OR DELETE ON objects
    FOR EACH ROW EXECUTE FUNCTION objects_changed();

-- Model names, unique across every replica: a replica claims a name in the database before it
-- creates a model under it, and releases it when the model is deleted. `owner` is the model's
-- id, so a claim repeated by its owner (a retry, the load at start-up) succeeds; a claim whose
-- owner never got a model record (its replica died between the two writes) is taken over once
-- it is old (`STALE_NAME_CLAIM`).
CREATE TABLE model_names (
    name       text COLLATE "C" PRIMARY KEY,
    owner      text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
