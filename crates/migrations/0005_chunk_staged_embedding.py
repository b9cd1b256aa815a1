# Adds the staged (not yet HNSW-indexed) embedding of a chunk. A nullable column without a default
# and a partial index over no rows yet: neither rewrites the table nor touches the HNSW index.

import pgvector.django.vector
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("crates", "0004_catalog_stamp"),
    ]

    operations = [
        migrations.AddField(
            model_name="chunk",
            name="staged_embedding",
            field=pgvector.django.vector.VectorField(blank=True, dimensions=settings.EMBEDDING_DIMENSION, null=True),
        ),
        migrations.AddIndex(
            model_name="chunk",
            index=models.Index(
                condition=models.Q(("staged_embedding__isnull", False)),
                fields=["release"],
                name="chunk_staged_release_idx",
            ),
        ),
    ]
