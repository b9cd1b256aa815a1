#!/usr/bin/env python3
"""Build an extended docs.rs replica: more real crates beside the shared eight (stdlib only).

    python3 bench/replica/build.py                     # all crates below -> var/replica-extra/
    python3 bench/replica/build.py --only regex,uuid   # rebuild some, keep the others
    python3 /work/shared/tools/docsrs_replica.py --root var/replica-extra --port 8850

Each crate's real source comes from Debian's ``librust-*-dev`` packages (``/usr/share/cargo/registry``,
a cargo directory source). A throw-away wrapper package depends on the exact release, so cargo resolves
only what the crate's built features need (no dev-dependencies, no unused optional ones), then the
machine's toolchain documents it twice, offline:

    RUSTC_BOOTSTRAP=1 cargo rustdoc -p NAME@VER --lib -- -Z unstable-options --output-format json
    cargo doc -p NAME@VER --lib --no-deps

The root has the layout ``docsrs_replica.py`` serves (manifest.json, docsrs/crate/<name>/<version>/
{json.zst,json.gz,download.zip}, docsrs/<name>/<version>/<crate_name>/..., index/<sparse path>,
api/v1/crates/<name>.json); the shared replica's crates are linked in (symlinks) and its manifest
entries merged, so one server answers for all of them. Like the shared replica, every built crate
also gets a yanked patch release without docs in the index.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "var" / "replica-extra"
DEFAULT_SHARED = ROOT.parent.parent / "shared" / "docsrs-replica"
DEFAULT_REGISTRY = Path("/usr/share/cargo/registry")
TARGET = "x86_64-unknown-linux-gnu"

# name, version (as packaged by Debian 12), features beyond the defaults (what a user of docs.rs sees
# documented for the everyday API: uuid's random v4, clap's derive macros).
CRATES: list[tuple[str, str, list[str]]] = [
    ("regex", "1.7.1", []),
    ("bytes", "1.2.1", []),
    ("base64", "0.13.0", []),
    ("uuid", "1.2.1", ["v4"]),
    ("hex", "0.4.3", []),
    ("indexmap", "1.9.2", []),
    ("smallvec", "1.9.0", []),
    ("memchr", "2.5.0", []),
    ("thiserror", "1.0.38", []),
    ("url", "2.3.1", []),
    ("clap", "4.0.32", ["derive"]),
    ("sha2", "0.10.5", []),
    ("chrono", "0.4.23", []),
    ("parking_lot", "0.12.1", []),
    ("crossbeam-channel", "0.5.6", []),
    ("walkdir", "2.3.2", []),
    ("tempfile", "3.3.0", []),
    ("itertools", "0.10.3", []),
]

APT_HINT = (
    "apt-get install -y librust-regex-dev librust-bytes-dev librust-base64-dev librust-uuid-dev "
    "librust-hex-dev librust-indexmap-dev librust-smallvec-dev librust-memchr-dev librust-thiserror-dev "
    "librust-url-dev librust-clap-dev librust-sha2-dev librust-chrono-dev librust-parking-lot-dev "
    "librust-crossbeam-channel-dev librust-walkdir-dev librust-tempfile-dev librust-itertools-dev "
    "librust-regex+default-dev librust-uuid+v4-dev"
)


def index_path(name: str) -> str:
    n = name.lower()
    if len(n) <= 2:
        return f"{len(n)}/{n}"
    if len(n) == 3:
        return f"3/{n[0]}/{n}"
    return f"{n[0:2]}/{n[2:4]}/{n}"


def run(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}); see {log}:\n" + "\n".join(tail))


def tool_version(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def write_wrapper(work: Path, registry: Path, name: str, version: str, features: list[str]) -> None:
    (work / ".cargo").mkdir(parents=True, exist_ok=True)
    (work / ".cargo" / "config.toml").write_text(
        '[source.crates-io]\nreplace-with = "debian"\n\n'
        f'[source.debian]\ndirectory = "{registry}"\n\n[net]\noffline = true\n'
    )
    feats = ", ".join(json.dumps(f) for f in features)
    (work / "Cargo.toml").write_text(
        '[package]\nname = "replica-wrapper"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
        '[lib]\npath = "lib.rs"\n\n[workspace]\n\n[dependencies]\n'
        f'{name} = {{ version = "={version}", features = [{feats}] }}\n'
    )
    (work / "lib.rs").write_text("")


def index_lines(meta: dict, name: str, version: str, cksum: str, yanked_cksum: str) -> list[dict]:
    deps = []
    for kind, table in (("normal", "dependencies"), ("dev", "dev-dependencies"), ("build", "build-dependencies")):
        for dep_name, spec in (meta.get(table) or {}).items():
            spec = {"version": spec} if isinstance(spec, str) else spec
            deps.append(
                {
                    "name": spec.get("package", dep_name),
                    "req": spec.get("version", "*")
                    if spec.get("version", "*")[0] in "^~=<>*"
                    else "^" + spec["version"],
                    "features": spec.get("features", []),
                    "optional": bool(spec.get("optional", False)),
                    "default_features": bool(spec.get("default-features", True)),
                    "target": None,
                    "kind": kind,
                }
            )
    features = {k: v for k, v in (meta.get("features") or {}).items()}
    rust_version = (meta.get("package") or {}).get("rust-version")
    base = {"name": name, "deps": deps, "features": features, "links": None, "rust_version": rust_version}
    major, minor, patch = version.split(".")
    return [
        {**base, "vers": version, "cksum": cksum, "yanked": False},
        {**base, "vers": f"{major}.{minor}.{int(patch) + 1}", "cksum": yanked_cksum, "yanked": True},
    ]


def api_document(name: str, pkg: dict, lines: list[dict], created: dt.datetime) -> dict:
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00")  # noqa: E731
    versions = []
    for number, line in enumerate(reversed(lines)):
        when = created + dt.timedelta(days=20 * (len(lines) - 1 - number))
        versions.append(
            {
                "id": int(hashlib.sha256(f"{name}{line['vers']}".encode()).hexdigest()[:8], 16),
                "crate": name,
                "num": line["vers"],
                "yanked": line["yanked"],
                "created_at": stamp(when),
                "updated_at": stamp(when),
                "license": pkg.get("license"),
                "rust_version": pkg.get("rust-version"),
                "downloads": 0,
                "checksum": line["cksum"],
                "dl_path": f"/api/v1/crates/{name}/{line['vers']}/download",
                "links": {"dependencies": f"/api/v1/crates/{name}/{line['vers']}/dependencies"},
            }
        )
    newest = lines[0]["vers"]
    return {
        "crate": {
            "id": name,
            "name": name,
            "description": " ".join((pkg.get("description") or "").split()),
            "homepage": pkg.get("homepage"),
            "repository": pkg.get("repository"),
            "documentation": pkg.get("documentation") or f"https://docs.rs/{name}",
            "keywords": pkg.get("keywords", []),
            "categories": pkg.get("categories", []),
            "downloads": 0,
            "max_stable_version": newest,
            "max_version": newest,
            "newest_version": newest,
            "default_version": newest,
            "num_versions": len(versions),
            "created_at": stamp(created),
            "updated_at": stamp(created + dt.timedelta(days=20)),
            "yanked": False,
        },
        "versions": versions,
    }


def tree_stats(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def build_crate(
    name: str, version: str, features: list[str], *, out: Path, work_root: Path, registry: Path, toolchain: dict
) -> dict:
    src = registry / f"{name}-{version}"
    if not (src / "Cargo.toml").exists():
        raise RuntimeError(f"{src} is missing: install the Debian package first ({APT_HINT})")
    meta = tomllib.loads((src / "Cargo.toml").read_text())
    pkg = meta["package"]
    lib = meta.get("lib") or {}
    crate_name = lib.get("name", name.replace("-", "_"))
    cksum = json.loads((src / ".cargo-checksum.json").read_text()).get("package") or ""
    work = work_root / "wrappers" / f"{name}-{version}"
    write_wrapper(work, registry, name, version, features)
    log = work_root / "logs" / f"{name}-{version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    env = {**os.environ, "RUSTC_BOOTSTRAP": "1", "CARGO_TERM_COLOR": "never"}
    env.pop("RUSTDOCFLAGS", None)
    spec = f"{name}@{version}"
    tj, th = work_root / "target-json", work_root / "target-html"
    shutil.rmtree(tj / "doc", ignore_errors=True)
    shutil.rmtree(th / "doc", ignore_errors=True)
    run(
        [
            "cargo",
            "rustdoc",
            "-p",
            spec,
            "--lib",
            "--offline",
            "--target-dir",
            str(tj),
            "--",
            "-Z",
            "unstable-options",
            "--output-format",
            "json",
        ],
        cwd=work,
        env=env,
        log=log,
    )
    run(
        ["cargo", "doc", "-p", spec, "--lib", "--no-deps", "--offline", "--target-dir", str(th)],
        cwd=work,
        env=env,
        log=log,
    )

    raw = (tj / "doc" / f"{crate_name}.json").read_bytes()
    doc = json.loads(raw)
    crate_dir = out / "docsrs" / "crate" / name / version
    html_dir = out / "docsrs" / name / version
    shutil.rmtree(crate_dir, ignore_errors=True)
    shutil.rmtree(html_dir, ignore_errors=True)
    crate_dir.mkdir(parents=True)
    (crate_dir / "json.gz").write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    subprocess.run(["zstd", "-q", "-19", "-f", "-", "-o", str(crate_dir / "json.zst")], input=raw, check=True)
    shutil.copytree(th / "doc", html_dir, symlinks=False)
    (html_dir / ".lock").unlink(missing_ok=True)
    with zipfile.ZipFile(crate_dir / "download.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in html_dir.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(html_dir).as_posix())

    yanked_cksum = hashlib.sha256(f"{name}-{version}-yanked".encode()).hexdigest()
    lines = index_lines(meta, name, version, cksum, yanked_cksum)
    ipath = out / "index" / index_path(name)
    ipath.parent.mkdir(parents=True, exist_ok=True)
    ipath.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    created = dt.datetime.fromtimestamp((src / "Cargo.toml").stat().st_mtime, tz=dt.UTC).replace(microsecond=0)
    api = out / "api" / "v1" / "crates" / f"{name}.json"
    api.parent.mkdir(parents=True, exist_ok=True)
    api_doc = api_document(name, pkg, lines, created)
    api.write_text(json.dumps(api_doc, indent=1))

    html_bytes, html_files = tree_stats(html_dir)
    index = doc.get("index") or {}
    return {
        "name": name,
        "version": version,
        "crate_name": crate_name,
        "json_available": True,
        "html_generator": toolchain["rustdoc_short"],
        "html_generator_full": toolchain["rustdoc"],
        "features_built": ["default", *features],
        "items": sum(1 for item in index.values() if item.get("crate_id") == 0),
        "items_index_total": len(index),
        "html_item_pages": sum(
            1
            for p in (html_dir / crate_name).rglob("*.html")
            if p.name.split(".")[0]
            in {"struct", "enum", "trait", "fn", "macro", "type", "constant", "static", "union", "derive", "attr"}
        ),
        "format_version": doc.get("format_version"),
        "sizes": {
            "json_raw": len(raw),
            "json_zst": (crate_dir / "json.zst").stat().st_size,
            "json_gz": (crate_dir / "json.gz").stat().st_size,
            "html_tree_bytes": html_bytes,
            "html_tree_files": html_files,
            "download_zip": (crate_dir / "download.zip").stat().st_size,
        },
        "created_at": api_doc["crate"]["created_at"],
        "json_sha256": hashlib.sha256(raw).hexdigest(),
        "paths": {
            "html_root": f"docsrs/{name}/{version}/",
            "html_index": f"docsrs/{name}/{version}/{crate_name}/index.html",
            "download_zip": f"docsrs/crate/{name}/{version}/download.zip",
            "json_zst": f"docsrs/crate/{name}/{version}/json.zst",
            "json_gz": f"docsrs/crate/{name}/{version}/json.gz",
            "index": f"index/{index_path(name)}",
            "api": f"api/v1/crates/{name}.json",
        },
        "cksum_source": "crates.io .crate sha256 (Debian .cargo-checksum.json)",
        "extra_versions": [{"num": lines[1]["vers"], "yanked": True, "prerelease": False, "docs": False}],
        "description": " ".join((pkg.get("description") or "").split()),
        "repository": pkg.get("repository"),
        "license": pkg.get("license"),
        "rust_version": pkg.get("rust-version"),
        "features_default": (meta.get("features") or {}).get("default", []),
        "source": {"debian_registry_dir": src.name, "built_via": "wrapper package (exact version dependency)"},
        "origin": "extra",
    }


def link_shared(out: Path, shared: Path) -> list[dict]:
    """Symlink every shared crate's files into ``out``; return its manifest entries."""
    manifest = json.loads((shared / "manifest.json").read_text())
    entries = []
    for entry in manifest["crates"]:
        name = entry["name"]
        for rel in (
            f"docsrs/crate/{name}",
            f"docsrs/{name}",
            f"index/{index_path(name)}",
            f"api/v1/crates/{name}.json",
        ):
            target, link = shared / rel, out / rel
            if not target.exists():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.is_dir():
                shutil.rmtree(link)
            link.symlink_to(target.resolve())
        entries.append({**entry, "origin": "shared"})
    return entries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared replica to link in")
    ap.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="Debian's cargo registry dir")
    ap.add_argument("--work", type=Path, default=None, help="build dir (default: <out>-build)")
    ap.add_argument("--only", default="", help="comma-separated crate names to (re)build; others are kept")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    work_root: Path = (args.work or out.with_name(out.name + "-build")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = only - {name for name, _, _ in CRATES}
    if unknown:
        ap.error(f"unknown crate(s): {', '.join(sorted(unknown))}")
    rustdoc = tool_version(["rustdoc", "--version"])
    toolchain = {
        "rustdoc": rustdoc,
        "rustdoc_short": " ".join(rustdoc.split()[:2]),
        "cargo": tool_version(["cargo", "--version"]),
        "json_cmd": "cargo rustdoc -p NAME@VERSION --lib --offline -- -Z unstable-options --output-format json",
        "html_cmd": "cargo doc -p NAME@VERSION --lib --no-deps --offline",
    }
    previous = {}
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        previous = {e["name"]: e for e in json.loads(manifest_path.read_text())["crates"] if e.get("origin") == "extra"}

    built, failed = [], []
    for name, version, features in CRATES:
        if only and name not in only:
            if name in previous and previous[name]["version"] == version:
                built.append(previous[name])
            continue
        start = time.perf_counter()
        print(f"building {name} {version} ...", file=sys.stderr, flush=True)
        try:
            entry = build_crate(
                name, version, features, out=out, work_root=work_root, registry=args.registry, toolchain=toolchain
            )
        except Exception as exc:  # one crate that does not build must not sink the others
            print(f"  ! {name}: {exc}", file=sys.stderr, flush=True)
            failed.append({"name": name, "version": version, "error": str(exc).splitlines()[0]})
            continue
        print(
            f"  {name}: {entry['items']} items, format {entry['format_version']}, {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        built.append(entry)

    shared_entries = link_shared(out, args.shared.resolve()) if args.shared.exists() else []
    if not shared_entries:
        print(f"  ! shared replica {args.shared} not found: only the extra crates are served", file=sys.stderr)
    crates = shared_entries + built
    formats = sorted({e["format_version"] for e in crates if e.get("format_version") is not None})
    manifest = {
        "set": "visible+extra",
        "generated_by": "bench/replica/build.py",
        "crates": crates,
        "format_version": formats[0] if len(formats) == 1 else formats,
        "toolchains": {"extra": toolchain, "shared": "see the shared replica's manifest.json"},
        "default_target": TARGET,
        "failed": failed,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(
        f"{out}: {len(shared_entries)} shared + {len(built)} extra crates"
        + (f", {len(failed)} failed: {', '.join(f['name'] for f in failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
