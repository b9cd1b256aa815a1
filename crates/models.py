"""Crates, their releases, the documented items and the searchable chunks."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from pgvector.django import HnswIndex, VectorField

from crates.names import normalize_crate_name


class CrateQuerySet(models.QuerySet):
    def alive(self) -> CrateQuerySet:
        return self.filter(deleted_at__isnull=True)

    def by_name(self, name: str) -> CrateQuerySet:
        return self.filter(normalized_name=normalize_crate_name(name))


class Crate(models.Model):
    name = models.CharField(max_length=64, help_text="Canonical spelling, as crates.io shows it.")
    normalized_name = models.CharField(
        max_length=64, unique=True, editable=False, help_text="Lower case with '-' as '_': the lookup key."
    )
    description = models.TextField(blank=True, default="")
    repository = models.URLField(max_length=500, blank=True, default="")
    latest_version = models.CharField(max_length=128, blank=True, default="")
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CrateQuerySet.as_manager()

    class Meta:
        ordering = ["normalized_name"]
        indexes = [models.Index(Lower("name"), name="crate_name_lower_idx")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.normalized_name = normalize_crate_name(self.name)
        super().save(*args, **kwargs)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class CrateRelease(models.Model):
    class Source(models.TextChoices):
        RUSTDOC_JSON = "rustdoc-json", "rustdoc JSON"
        HTML = "html", "HTML"

    class State(models.TextChoices):
        BUILDING = "building", "Building"
        ACTIVE = "active", "Active"
        SUPERSEDED = "superseded", "Superseded"

    crate = models.ForeignKey(Crate, on_delete=models.CASCADE, related_name="releases")
    version = models.CharField(max_length=128)
    docs_source = models.CharField(max_length=16, choices=Source.choices)
    format_version = models.PositiveIntegerField(null=True, blank=True, help_text="rustdoc JSON format.")
    generator = models.CharField(max_length=200, blank=True, default="", help_text="rustdoc that made it.")
    target = models.CharField(max_length=100, blank=True, default="")
    # A database default too: releases are also inserted in raw SQL (the store, bulk loaders).
    source_notes = models.JSONField(
        default=list, blank=True, db_default=[],
        help_text="What the parser skipped and whether the release fell back to HTML.",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.BUILDING, db_index=True)
    item_count = models.PositiveIntegerField(default=0)
    document_count = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    embedding_count = models.PositiveIntegerField(default=0)
    embedding_model = models.CharField(max_length=200, blank=True, default="")
    embedding_dimension = models.PositiveIntegerField(null=True, blank=True)
    etag = models.CharField(max_length=200, blank=True, default="")
    artifact_sha256 = models.CharField(max_length=64, blank=True, default="")
    job_id = models.UUIDField(null=True, blank=True, help_text="The job that built it.")
    created_at = models.DateTimeField(auto_now_add=True)
    ingested_at = models.DateTimeField(null=True, blank=True)
    # The crate's [features] as the sparse index lists them (features and features2 merged): name -> what it
    # enables; "default" is the default set. A database default too: the store inserts releases in raw SQL.
    features = models.JSONField(default=dict, blank=True, db_default={})
    # Active before its vectors are all in (a first ingest is searchable by keyword and path as soon as its
    # documents are stored); embedding_count of chunk_count says how far the semantic signal reaches.
    embedding_pending = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["crate", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["crate", "version"],
                condition=Q(state="active"),
                name="one_active_release_per_version",
            ),
        ]
        indexes = [models.Index(fields=["crate", "state"], name="release_crate_state_idx")]

    def __str__(self) -> str:
        return f"{self.crate.name} {self.version} ({self.state})"


class Document(models.Model):
    class Kind(models.TextChoices):
        MODULE = "module"
        STRUCT = "struct"
        ENUM = "enum"
        UNION = "union"
        TRAIT = "trait"
        TRAIT_ALIAS = "trait_alias"
        FUNCTION = "function"
        METHOD = "method"
        MACRO = "macro"
        CONSTANT = "constant"
        STATIC = "static"
        TYPE_ALIAS = "type_alias"
        FIELD = "field"
        VARIANT = "variant"
        ASSOC_TYPE = "assoc_type", "associated type"
        ASSOC_CONST = "assoc_const", "associated constant"
        PRIMITIVE = "primitive"
        KEYWORD = "keyword"

    # Indexed by document_release_kind_idx (release, kind): a second index on release alone only slowed ingest.
    release = models.ForeignKey(CrateRelease, on_delete=models.CASCADE, related_name="documents", db_index=False)
    path = models.CharField(max_length=1000, help_text="Full public path, e.g. tokio::sync::Mutex::lock.")
    name = models.CharField(max_length=300)
    # No index of its own: a kind alone selects a large share of the table; with a release it is
    # document_release_kind_idx.
    kind = models.CharField(max_length=16, choices=Kind.choices)
    parent_path = models.CharField(max_length=1000, blank=True, default="")
    signature = models.TextField(blank=True, default="")
    docs = models.TextField(blank=True, default="", help_text="Markdown.")
    url = models.URLField(max_length=1500, blank=True, default="")
    deprecated = models.BooleanField(default=False)
    deprecation_note = models.TextField(blank=True, default="")
    content_hash = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["release", "path", "kind"], name="document_unique_path_kind"),
        ]
        indexes = [
            models.Index(fields=["release", "kind"], name="document_release_kind_idx"),
            models.Index(Lower("path"), name="document_path_lower_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


class Chunk(models.Model):
    # Indexed by chunk_unique_ordinal (document, ordinal); chunk_release_idx serves release below.
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks", db_index=False)
    # Denormalised so search can filter by release without a join.
    release = models.ForeignKey(CrateRelease, on_delete=models.CASCADE, related_name="chunks", db_index=False)
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    search_text = models.TextField(
        blank=True, default="", help_text="Text with identifiers split and joined, for full-text search."
    )
    token_count = models.PositiveIntegerField(default=0)
    content_hash = models.CharField(max_length=64)
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSION, null=True, blank=True)
    # The ingest writes vectors here, where no HNSW index maintains them (that insert was most of the
    # store stage's cost); crates.services.index_staged_chunks later moves them into ``embedding``.
    # Search scans staged rows exactly, so a chunk is findable either way. At most one of the two is set.
    staged_embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSION, null=True, blank=True)
    search_vector = models.GeneratedField(
        expression=SearchVector("search_text", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["document", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal"),
        ]
        indexes = [
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(fields=["search_vector"], name="chunk_search_vector_gin"),
            models.Index(fields=["release"], name="chunk_release_idx"),
            # Finds the (few) staged chunks of a search's releases, and the indexer's next batch.
            models.Index(
                fields=["release"], name="chunk_staged_release_idx", condition=Q(staged_embedding__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document.path} #{self.ordinal}"


class Project(models.Model):
    """A project's locked dependency versions (from its Cargo.lock), so search reads exactly those."""

    name = models.CharField(max_length=64, unique=True)
    lockfile_version = models.PositiveSmallIntegerField(default=3)
    direct_only = models.BooleanField(default=False, help_text="Only direct dependencies were ingested.")
    has_manifest = models.BooleanField(default=False, help_text="A Cargo.toml was given: features are known.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProjectPackage(models.Model):
    class Source(models.TextChoices):
        CRATES_IO = "crates.io", "crates.io"
        REGISTRY = "registry", "other registry"
        GIT = "git", "git"
        PATH = "path", "path (workspace)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="packages")
    name = models.CharField(max_length=64)
    normalized_name = models.CharField(max_length=64)
    version = models.CharField(max_length=128)
    source = models.CharField(max_length=16, choices=Source.choices)
    direct = models.BooleanField(default=False)
    dependency_kinds = models.JSONField(default=list, blank=True, help_text="normal, dev, build (from the manifest).")
    features = models.JSONField(default=list, blank=True, help_text="Features the manifest enables.")
    default_features = models.BooleanField(default=True)

    class Meta:
        ordering = ["project", "normalized_name", "version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "normalized_name", "version"], name="project_package_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class TypeSignature(models.Model):
    """A function's or method's types, for type search (crates.search.types; shapes in crates.typesig)."""

    document = models.OneToOneField(Document, on_delete=models.CASCADE, primary_key=True, related_name="type_signature")
    # Filtered, never selective alone: the GIN index on terms picks the candidates.
    release = models.ForeignKey(CrateRelease, on_delete=models.CASCADE, related_name="+", db_index=False)
    terms = ArrayField(models.TextField(), help_text="i:duration, o:sleep, o:#deserialize (crates.typesig.terms).")
    signature = models.JSONField(help_text='{"i": [input nodes], "o": output node}')

    class Meta:
        indexes = [GinIndex(fields=["terms"], name="typesig_terms_gin")]

    def __str__(self) -> str:
        return f"types of {self.document_id}"


class TraitImpl(models.Model):
    """One `impl Trait for Type` of a release: the trait graph (implementors of a trait, traits of a type)."""

    release = models.ForeignKey(CrateRelease, on_delete=models.CASCADE, related_name="+", db_index=False)
    # The document that lists it: the type's when the type is documented in the release, else the trait's.
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="impls")
    trait_name = models.CharField(max_length=300)
    trait_key = models.CharField(max_length=300, help_text="Lower-case last segment, the lookup key.")
    trait_path = models.CharField(max_length=1000, blank=True, default="")
    type_name = models.CharField(max_length=300)
    type_key = models.CharField(max_length=300)
    type_path = models.CharField(max_length=1000, blank=True, default="")
    declaration = models.TextField(blank=True, default="", help_text="impl<'de> Deserialize<'de> for Value")
    bounds = models.TextField(blank=True, default="", help_text="The impl's where clause.")
    blanket = models.BooleanField(default=False)
    negative = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["release", "trait_key"], name="traitimpl_release_trait_idx"),
            models.Index(fields=["release", "type_key"], name="traitimpl_release_type_idx"),
        ]

    def __str__(self) -> str:
        return self.declaration or f"impl {self.trait_name} for {self.type_name}"


class EmbeddingCache(models.Model):
    """Embeddings by content, so re-ingesting an unchanged item costs no model call."""

    model = models.CharField(max_length=200)
    content_hash = models.CharField(max_length=64)
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSION)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "content_hash"], name="embedding_cache_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.model}:{self.content_hash[:12]}"


class FetchedArtifact(models.Model):
    """The raw download of a release, kept so a resumed job does not fetch it again."""

    crate_name = models.CharField(max_length=64)
    version = models.CharField(max_length=128)
    kind = models.CharField(max_length=16)  # json | zip
    url = models.URLField(max_length=1000)
    etag = models.CharField(max_length=200, blank=True, default="")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    body = models.BinaryField()
    fetched_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["crate_name", "version", "kind"], name="artifact_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.crate_name} {self.version} {self.kind}"


class HostRateLimit(models.Model):
    """Next free request slot per upstream host, shared by every worker process and machine."""

    host = models.CharField(max_length=255, unique=True)
    next_slot_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.host


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True, editable=False)
    key_hash = models.CharField(max_length=128, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
