# Keep a chunk's vectors in its heap row instead of TOAST. pgvector's type defaults to EXTERNAL
# storage, so any row over ~2 kB (most chunks: text + vector + search_vector) had its 1.5 kB
# vector moved out of line, and every exact-scan distance and every HNSW result row paid a TOAST
# lookup: a crate-filtered vector query over 1,000 chunks went from 5.0 to 2.4 ms with them inline.
# MAIN keeps them in the row unless nothing else can be moved out; toast_tuple_target=4080 (two rows
# a page) leaves room for the vector plus the compressed search_vector (also MAIN, 0003).
# Only rows written from now on get the new layout; `VACUUM FULL crates_chunk` rewrites old ones.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("crates", "0005_chunk_staged_embedding"),
    ]

    operations = [
        migrations.RunSQL(
            sql=[
                "ALTER TABLE crates_chunk ALTER COLUMN embedding SET STORAGE MAIN",
                "ALTER TABLE crates_chunk ALTER COLUMN staged_embedding SET STORAGE MAIN",
                "ALTER TABLE crates_chunk SET (toast_tuple_target = 4080)",
            ],
            reverse_sql=[
                "ALTER TABLE crates_chunk RESET (toast_tuple_target)",
                "ALTER TABLE crates_chunk ALTER COLUMN staged_embedding SET STORAGE EXTERNAL",
                "ALTER TABLE crates_chunk ALTER COLUMN embedding SET STORAGE EXTERNAL",
            ],
        ),
    ]
