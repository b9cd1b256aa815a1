"""A small, realistic search corpus: items written after the real docs of tokio, serde_json and a
hash map crate, stored by the pipeline's own store stage (chunk_item, store_batch and the real
local MiniLM embeddings), so ranking tests exercise the real SQL and the real model.
"""

from __future__ import annotations

import functools

from django.utils import timezone

from crates.models import Crate, CrateRelease
from crates.pipeline import store
from crates.pipeline.chunk import chunk_item
from crates.pipeline.types import ParsedItem


def item(path: str, kind: str, signature: str, docs: str, **extra) -> ParsedItem:
    name = path.rsplit("::", 1)[-1]
    parent = path.rsplit("::", 1)[0] if "::" in path else ""
    return ParsedItem(
        path=path,
        name=name,
        kind=kind,
        parent_path=extra.pop("parent_path", parent),
        signature=signature,
        docs=docs,
        url=extra.pop("url", path.replace("::", "/") + ".html"),
        **extra,
    )


TOKIO = [
    item("tokio", "module", "", "A runtime for writing reliable network applications without compromising speed."),
    item(
        "tokio::sync::Mutex",
        "struct",
        "pub struct Mutex<T: ?Sized>",
        "An asynchronous `Mutex`-like type.\n\nThis type acts similarly to `std::sync::Mutex`, with two major "
        "differences: `lock` is an async method so does not block, and the lock guard is designed to be held "
        "across `.await` points.",
        metadata={"aliases": ["tokio::Mutex"]},
    ),
    item(
        "tokio::sync::Mutex::lock",
        "method",
        "pub async fn lock(&self) -> MutexGuard<'_, T>",
        "Locks this mutex, causing the current task to yield until the lock has been acquired. When the lock "
        "has been acquired, function returns a `MutexGuard`.\n\n# Cancel safety\n\nThis method uses a queue to "
        "fairly distribute locks in the order they were requested.",
    ),
    item(
        "tokio::sync::Mutex::try_lock",
        "method",
        "pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError>",
        "Attempts to acquire the lock, and returns `TryLockError` if the lock is currently held somewhere else.",
    ),
    item(
        "tokio::sync::Mutex::new",
        "method",
        "pub fn new(t: T) -> Mutex<T>",
        "Creates a new lock in an unlocked state ready for use.",
    ),
    item(
        "tokio::sync::RwLock",
        "struct",
        "pub struct RwLock<T: ?Sized>",
        "An asynchronous reader-writer lock. This type of lock allows a number of readers or at most one "
        "writer at any point in time.",
    ),
    item(
        "tokio::runtime::Runtime",
        "struct",
        "pub struct Runtime",
        "The Tokio runtime. The runtime provides an I/O driver, task scheduler, timer, and blocking pool, "
        "necessary for running asynchronous tasks.",
    ),
    item(
        "tokio::runtime::Runtime::block_on",
        "method",
        "pub fn block_on<F: Future>(&self, future: F) -> F::Output",
        "Runs a future to completion on the Tokio runtime. This is the runtime's entry point.\n\nThis runs the "
        "given future on the current thread, blocking until it is complete, and yielding its resolved result. "
        "Use it to call async code from synchronous code such as `main`.",
    ),
    item(
        "tokio::spawn",
        "function",
        "pub fn spawn<T>(future: T) -> JoinHandle<T::Output>",
        "Spawns a new asynchronous task, returning a `JoinHandle` for it. Spawning a task enables the task to "
        "execute concurrently to other tasks.",
        metadata={"aliases": ["tokio::task::spawn"]},
    ),
    item(
        "tokio::task::spawn_blocking",
        "function",
        "pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>",
        "Runs the provided closure on a thread where blocking is acceptable. Use it for CPU-bound work or "
        "synchronous I/O that would otherwise stall the async executor.",
    ),
    item(
        "tokio::time::sleep",
        "function",
        "pub fn sleep(duration: Duration) -> Sleep",
        "Waits until `duration` has elapsed. Equivalent to `sleep_until(Instant::now() + duration)`. An async "
        "analog to `std::thread::sleep`.",
    ),
    item(
        "tokio::time::timeout",
        "function",
        "pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F>",
        "Requires a `Future` to complete before the specified duration has elapsed. If the future completes "
        "before the duration has elapsed, then the completed value is returned. Otherwise, an error is returned "
        "and the future is canceled.",
    ),
    item(
        "tokio::sync::mpsc::channel",
        "function",
        "pub fn channel<T>(buffer: usize) -> (Sender<T>, Receiver<T>)",
        "Creates a bounded mpsc channel for communicating between asynchronous tasks with backpressure. The "
        "channel will buffer up to the provided number of messages.",
    ),
    item(
        "tokio::fs::read_to_string",
        "function",
        "pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String>",
        "Creates a future which will open a file for reading and read the entire contents into a string and "
        "return said string.",
    ),
    item(
        "tokio::select",
        "macro",
        "macro_rules! select { ... }",
        "Waits on multiple concurrent branches, returning when the first branch completes, cancelling the "
        "remaining branches.",
    ),
]

SERDE_JSON = [
    item("serde_json", "module", "", "Serde JSON: JSON is a ubiquitous open-standard format."),
    item(
        "serde_json::from_str",
        "function",
        "pub fn from_str<'a, T>(s: &'a str) -> Result<T> where T: Deserialize<'a>",
        "Deserialize an instance of type `T` from a string of JSON text.\n\n# Errors\n\nThis conversion can "
        "fail if the structure of the input does not match the structure expected by `T`, for example if `T` is "
        "a struct type but the input contains something other than a JSON map.",
    ),
    item(
        "serde_json::to_string",
        "function",
        "pub fn to_string<T: ?Sized + Serialize>(value: &T) -> Result<String>",
        "Serialize the given data structure as a String of JSON.\n\n# Errors\n\nSerialization can fail if "
        "`T`'s implementation of `Serialize` decides to fail, or if `T` contains a map with non-string keys.",
    ),
    item(
        "serde_json::to_string_pretty",
        "function",
        "pub fn to_string_pretty<T: ?Sized + Serialize>(value: &T) -> Result<String>",
        "Serialize the given data structure as a pretty-printed String of JSON.",
    ),
    item(
        "serde_json::Value",
        "enum",
        "pub enum Value { Null, Bool(bool), Number(Number), String(String), Array(Vec<Value>), Object(Map) }",
        "Represents any valid JSON value. See the `serde_json::value` module documentation for usage examples.",
        metadata={"aliases": ["serde_json::value::Value"]},
    ),
    item(
        "serde_json::Value::as_str",
        "method",
        "pub fn as_str(&self) -> Option<&str>",
        "If the `Value` is a String, returns the associated str. Returns None otherwise.",
    ),
    item(
        "serde_json::Value::get",
        "method",
        "pub fn get<I: Index>(&self, index: I) -> Option<&Value>",
        "Index into a JSON array or map. A string index can be used to access a value in a map, and a usize "
        "index can be used to access an element of an array.",
    ),
    item(
        "serde_json::Error",
        "struct",
        "pub struct Error",
        "This type represents all possible errors that can occur when serializing or deserializing JSON data.",
    ),
    item(
        "serde_json::Error::line",
        "method",
        "pub fn line(&self) -> usize",
        "One-based line number at which the error was detected.",
    ),
    item(
        "serde_json::json",
        "macro",
        "macro_rules! json { ... }",
        "Construct a `serde_json::Value` from a JSON literal.",
    ),
    item(
        "serde_json::map::Map",
        "struct",
        "pub struct Map<K, V>",
        "Represents a JSON key/value type.",
        metadata={"aliases": ["serde_json::Map"]},
    ),
    # Methods live under their type's canonical path only, as rustdoc JSON has them.
    item(
        "serde_json::map::Map::with_capacity",
        "method",
        "pub fn with_capacity(capacity: usize) -> Self",
        "Makes a new empty Map with the given initial capacity.",
    ),
]

HASHBROWN = [
    item(
        "hashbrown::HashMap",
        "struct",
        "pub struct HashMap<K, V, S = DefaultHashBuilder, A = Global>",
        "A hash map implemented with quadratic probing and SIMD lookup.",
    ),
    item(
        "hashbrown::HashMap::with_capacity",
        "method",
        "pub fn with_capacity(capacity: usize) -> Self",
        "Creates an empty `HashMap` with the specified capacity. The hash map will be able to hold at least "
        "`capacity` elements without reallocating.",
    ),
    item(
        "hashbrown::HashMap::insert",
        "method",
        "pub fn insert(&mut self, k: K, v: V) -> Option<V>",
        "Inserts a key-value pair into the map. If the map did not have this key present, None is returned.",
    ),
    item(
        "hashbrown::HashSet",
        "struct",
        "pub struct HashSet<T, S = DefaultHashBuilder>",
        "A hash set implemented as a `HashMap` where the value is `()`.",
    ),
]

# Items that exist only in releases search must never show: building, superseded, soft-deleted.
GHOST_DOCS = "Zanzibar quokka marmalade: a phantom item that must never be found by search."


@functools.cache
def embedder():
    """The real local MiniLM, loaded once per test session."""
    from crates.pipeline.embed import get_embedder

    return get_embedder(provider="local")


def store_release(
    *, crate: str, version: str, items: list[ParsedItem], state: str = "active", deleted: bool = False
) -> CrateRelease:
    """Write one release with its documents and real chunks/embeddings, as the pipeline would."""
    model = embedder()
    key = crate.replace("-", "_").lower()
    crate_row, _ = Crate.objects.get_or_create(normalized_name=key, defaults={"name": crate})
    if deleted:
        crate_row.deleted_at = timezone.now()
        crate_row.save()
    release = CrateRelease.objects.create(
        crate=crate_row,
        version=version,
        docs_source="rustdoc-json",
        state=state,
        embedding_model=model.model_name,
        embedding_dimension=384,
        ingested_at=timezone.now() if state == "active" else None,
    )
    chunked = [
        (item, chunk_item(item, max_tokens=model.max_tokens, count_tokens=model.count_tokens)) for item in items
    ]
    vectors = iter(model.embed([c.text for _item, chunks in chunked for c in chunks]))
    batch = [
        store.StoredItem(item=item, chunks=chunks, vectors=[next(vectors) for _c in chunks])
        for item, chunks in chunked
    ]
    documents, chunks = store.store_batch(release=release, package=crate, local=False, batch=batch)
    release.document_count = documents
    release.chunk_count = chunks
    release.embedding_count = chunks
    release.save()
    return release
