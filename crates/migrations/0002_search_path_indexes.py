"""Indexes for the path signal of search and for get_item.

``ferrodex_path_tails(path, metadata)`` lists every segment-boundary suffix of
the lower-cased path and of each alias in ``metadata["aliases"]``
(``tokio::sync::Mutex::lock`` -> ``tokio::sync::mutex::lock``,
``sync::mutex::lock``, ``mutex::lock``, ``lock``). A GIN index on it answers
"exact path or tail of a path, or of an alias" (``Mutex::lock``,
``serde::Deserialize``) with one index probe; pg_trgm is not available in the
embedded server, and a reversed-path btree would not cover aliases.
The ``text_pattern_ops`` index serves prefix matches (``tokio::sync::Mu``)
whatever the database collation.
"""

from django.db import migrations

PATH_TAILS_FUNCTION = r"""
CREATE OR REPLACE FUNCTION ferrodex_path_tails(path text, metadata jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT tail), '{}'::text[])
    FROM (
        SELECT array_to_string(segments[i:], '::') AS tail
        FROM (
            SELECT string_to_array(lower(p), '::') AS segments
            FROM (
                SELECT path AS p
                UNION ALL
                SELECT jsonb_array_elements_text(
                    CASE WHEN jsonb_typeof(metadata -> 'aliases') = 'array'
                         THEN metadata -> 'aliases' ELSE '[]'::jsonb END
                )
            ) AS all_paths
            WHERE p IS NOT NULL AND p <> ''
        ) AS split,
        generate_series(1, cardinality(segments)) AS i
    ) AS tails
    WHERE tail <> ''
$$;
"""


class Migration(migrations.Migration):

    dependencies = [
        ("crates", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(PATH_TAILS_FUNCTION, reverse_sql="DROP FUNCTION IF EXISTS ferrodex_path_tails(text, jsonb);"),
        migrations.RunSQL(
            "CREATE INDEX document_path_tails_gin ON crates_document USING gin (ferrodex_path_tails(path, metadata));",
            reverse_sql="DROP INDEX IF EXISTS document_path_tails_gin;",
        ),
        migrations.RunSQL(
            "CREATE INDEX document_path_lower_pattern_idx ON crates_document (lower(path) text_pattern_ops);",
            reverse_sql="DROP INDEX IF EXISTS document_path_lower_pattern_idx;",
        ),
        migrations.RunSQL(
            "CREATE INDEX document_parent_path_idx ON crates_document (release_id, parent_path);",
            reverse_sql="DROP INDEX IF EXISTS document_parent_path_idx;",
        ),
    ]
