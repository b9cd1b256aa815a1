"""Tell the planner what ``ferrodex_path_tails`` costs.

It is a SQL function with an aggregate, so PostgreSQL cannot inline it and runs it row by row (~50 us a
document). With the default cost of 100 the planner preferred computing it for every document of the
releases in scope over the GIN index that holds its results: a path lookup in one crate of a 1M-chunk
corpus took ~28 ms instead of ~0.2 ms (bench/search_latency.py, crate filter).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("crates", "0007_drop_duplicate_indexes"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER FUNCTION ferrodex_path_tails(text, jsonb) COST 5000;",
            reverse_sql="ALTER FUNCTION ferrodex_path_tails(text, jsonb) COST 100;",
        ),
    ]
