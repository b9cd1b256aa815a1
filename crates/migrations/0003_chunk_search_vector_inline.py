"""Keep ``crates_chunk.search_vector`` in the row instead of the TOAST table.

Keyword search ranks every candidate chunk with ts_rank, which reads its search_vector: out of
line that is a TOAST index descent per candidate (about 5 µs each, a third of a keyword query at
100k chunks). With STORAGE MAIN PostgreSQL compresses it in place and moves text, search_text and
the embedding out first. Rows written before this migration keep their layout until the release is
re-ingested (or the table is rewritten, e.g. VACUUM FULL).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("crates", "0002_search_path_indexes")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE crates_chunk ALTER COLUMN search_vector SET STORAGE MAIN",
            reverse_sql="ALTER TABLE crates_chunk ALTER COLUMN search_vector SET STORAGE EXTENDED",
        )
    ]
