"""A stamp that changes whenever what search may see changes (releases, crates).

Every search needs the visible releases; at a thousand crates reading them costs ~5 ms a query.
Search processes cache the list under this stamp and re-read it only when the stamp moved. The
stamp comes from a sequence, so a rolled-back change can never make an old stamp mean new data.
"""

from django.db import migrations

FORWARD = """
CREATE SEQUENCE ferrodex_catalog_stamp_seq;
CREATE TABLE ferrodex_catalog_stamp (
    id smallint PRIMARY KEY CHECK (id = 1),
    stamp bigint NOT NULL
);
INSERT INTO ferrodex_catalog_stamp VALUES (1, nextval('ferrodex_catalog_stamp_seq'));
CREATE FUNCTION ferrodex_bump_catalog_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ferrodex_catalog_stamp SET stamp = nextval('ferrodex_catalog_stamp_seq') WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER release_catalog_stamp
    AFTER INSERT OR DELETE OR UPDATE OF state, version, crate_id, embedding_model, document_count, chunk_count
    ON crates_craterelease FOR EACH STATEMENT EXECUTE FUNCTION ferrodex_bump_catalog_stamp();
CREATE TRIGGER release_catalog_stamp_truncate AFTER TRUNCATE
    ON crates_craterelease FOR EACH STATEMENT EXECUTE FUNCTION ferrodex_bump_catalog_stamp();
CREATE TRIGGER crate_catalog_stamp
    AFTER INSERT OR DELETE OR UPDATE OF name, deleted_at
    ON crates_crate FOR EACH STATEMENT EXECUTE FUNCTION ferrodex_bump_catalog_stamp();
CREATE TRIGGER crate_catalog_stamp_truncate AFTER TRUNCATE
    ON crates_crate FOR EACH STATEMENT EXECUTE FUNCTION ferrodex_bump_catalog_stamp();
"""

REVERSE = """
DROP TRIGGER IF EXISTS release_catalog_stamp ON crates_craterelease;
DROP TRIGGER IF EXISTS release_catalog_stamp_truncate ON crates_craterelease;
DROP TRIGGER IF EXISTS crate_catalog_stamp ON crates_crate;
DROP TRIGGER IF EXISTS crate_catalog_stamp_truncate ON crates_crate;
DROP FUNCTION IF EXISTS ferrodex_bump_catalog_stamp();
DROP TABLE IF EXISTS ferrodex_catalog_stamp;
DROP SEQUENCE IF EXISTS ferrodex_catalog_stamp_seq;
"""


class Migration(migrations.Migration):
    dependencies = [("crates", "0003_chunk_search_vector_inline")]

    operations = [migrations.RunSQL(FORWARD, reverse_sql=REVERSE)]
