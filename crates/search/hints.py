"""Crates a search query names that are not indexed, so an answer can say so instead of serving
another crate's items as if they were the answer ("uuid v4 random" answered with clap items)."""

from __future__ import annotations

import re

from crates.names import TOOLCHAIN_CRATES, normalize_crate_name
from crates.search.scope import catalog


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Crates people name in questions, from crates.io's most downloaded and most asked about. A query
# word in this list, or a name written as a path head (`uuid::Uuid`) or next to "crate", is a crate.
WELL_KNOWN_CRATES = _wordset("""
actix actix_web ahash aho_corasick anyhow arc_swap argon2 arrayvec askama assert_cmd async_std async_trait
atty axum base64 bcrypt bincode bitflags blake3 bumpalo byteorder bytemuck bytes camino cargo_metadata
cc cfg_if chrono chrono_tz ciborium clap color_eyre comfy_table config console criterion crossbeam
crossbeam_channel crossterm csv ctrlc dashmap derive_more diesel digest directories dirs dotenvy dyn_clone
ed25519_dalek either encoding_rs enum_map env_logger eyre fancy_regex fastrand flate2 fnv futures
futures_util getrandom git2 glam globset h2 handlebars hashbrown heck hex hmac http http_body hyper
hyper_util image indexmap indicatif insta itertools itoa jsonwebtoken lazy_static lettre libc libloading
log lru md5 memchr memmap2 mime miniz_oxide minijinja mio mockall nalgebra ndarray nix nom notify
num num_bigint num_cpus num_traits once_cell openssl ordered_float owo_colors parking_lot paste pest
petgraph pin_project pin_project_lite postcard prettytable proc_macro2 prost proptest quick_xml quote
rand rand_core rayon redis regex reqwest ring rocket ron rusqlite rust_decimal rustix rustls
rustyline ryu schemars scopeguard semver serde serde_derive serde_json serde_with serde_yaml sha1 sha2
sha3 similar slab slog smallvec smol socket2 sqlx static_assertions strsim structopt strum subtle syn
sysinfo tabled tempfile tera termcolor textwrap thiserror time tinyvec tokio tokio_stream tokio_util toml
toml_edit tonic tower tower_http tracing tracing_subscriber tungstenite typenum ulid unicode_segmentation
unicode_width url uuid walkdir warp wasm_bindgen web_sys which winapi windows yaml_rust zerocopy zip zstd
""")
# Names that are also everyday words in a question ("the time out", "log in", "either way"): only a crate
# when written as one (a path head, next to "crate").
_ORDINARY_WORDS = _wordset("""
bytes cc config console csv either glob hex http image log mime num quote rand ring rocket similar slab
smol syn time tower url warp which windows zip digest notify paste insta futures directories heck subtle
tracing
""")
# Words that sit next to "crate" without being a crate's name ("the current crate", "a new crate").
_NOT_NAMES = _wordset("""
a an any another current each every external my new other our own root same some that the their this
which whole your local main binary library dependency public private published
""")
# Crates named like a module of std: `time::Duration` is std's as often as the time crate's.
_STD_MODULES = frozenset({"time", "num"})
_PATH_HEAD = re.compile(r"\b([A-Za-z][A-Za-z0-9_-]*)::")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _named(text: str) -> list[str]:
    """Crate names the text names, in order, normalized (``serde-json`` -> ``serde_json``)."""
    words = _WORD.findall(text)
    found: list[str] = []
    for head in _PATH_HEAD.findall(text):
        key = normalize_crate_name(head)
        if key in WELL_KNOWN_CRATES and key not in _STD_MODULES:  # `uuid::Uuid`, not `sync::Mutex`
            found.append(head)
    for index, word in enumerate(words):
        lowered = word.lower()
        neighbours = {w.lower() for w in words[max(index - 1, 0) : index + 2]} - {lowered}
        beside_crate = bool(neighbours & {"crate", "crates"})
        key = normalize_crate_name(lowered)
        known = key in WELL_KNOWN_CRATES and (key not in _ORDINARY_WORDS or beside_crate)
        called_a_crate = beside_crate and lowered not in _NOT_NAMES | {"crate", "crates"} and len(word) > 1
        if known or called_a_crate:
            found.append(lowered)
    names: dict[str, None] = {}
    for name in found:
        key = normalize_crate_name(name)
        if key and key not in TOOLCHAIN_CRATES:
            names.setdefault(key, None)
    return list(names)


def missing_crates(*, query: str, crate: str | None = None) -> list[str]:
    """Crates the query (or the ``crate`` filter) names that no active release of a visible crate covers.

    Reads the cached catalog (no round trip while it is fresh); an indexed crate is never reported.
    """
    named = _named(query or "")
    if crate and str(crate).strip():
        named = list(dict.fromkeys([normalize_crate_name(str(crate)), *named]))
    if not named:
        return []
    indexed = catalog(trust_cache=True).by_crate
    return [name for name in named if name and name[:64] not in indexed]


def missing_crate_hint(names: list[str]) -> str:
    """One sentence for every front: which crates are missing and how to add them."""
    if not names:
        return ""
    shown = ", ".join(repr(n) for n in names[:3])
    first = names[0]
    return (
        f"The query names {shown}, not indexed here, so no result comes from "
        f"{'it' if len(names) == 1 else 'them'}. Add it with add_rust_crate (MCP), POST /api/v1/crates "
        f'{{"name": "{first}"}} (API) or Add crate in the admin, then search again.'
    )
