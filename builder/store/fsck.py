"""fsck: check every object of a store against what names it, and remove what is broken.

What is checked, each kind once:
  blob     every file of layout/blobs/sha256 hashes to its name
  image    every index.json entry: its manifest, config and layers are there, sound, parse,
           and the config lists one diff_id per layer
  layer    every unpacked layer dir, tarred as our layer writer tars it, is the tar its
           diff_id names (or, for a layer made from a foreign tar or clamped by
           SOURCE_DATE_EPOCH, the same tree as a fresh unpack of its sound blob)
  cache    every build cache record parses; a step record's layer blob is there and sound
  variant  every variant record parses and its blob is sound

Repair removes what is broken, never what is sound: the corrupt blobs, the index entries of
the images reaching a missing or corrupt blob (their names are lost, and the image is pulled
or built again), the broken unpacked layers (unpacked again from their blob on next use), and
the broken cache and variant records (a miss next time). What is left is a valid layout in
which every name reads. The caller holds gc's exclusive lock and the update lock.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder.errors import BuilderError, StoreError
from builder.image.canonical import canonical_json
from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.image.fields import FormatError
from builder.image.manifest import Index
from builder.image.mediatypes import Compression, MediaType
from builder.record import dataclass, field
from builder.store.atomic import write_atomic
from builder.store.blobs import FSCK_HINT
from builder.store.cache import StepRecord
from builder.store.layout import LAYOUT_VERSION, ref_of
from builder.store.store import Store
from builder.store.variants import Variant

_READ = 1 << 20
_MANIFESTS = (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST)


@dataclass(frozen=True)
class Problem:
    kind: str  # blob | image | layer | cache | variant | index (index.json, oci-layout)
    name: str  # the object: a digest, an image's name, a cache key
    what: str

    def line(self) -> str:
        return f"{self.kind} {self.name}: {self.what}"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "problem": self.what}


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("blob", "image", "layer", "cache", "variant"), 0)
    )
    # What repair acts on, found by the check.
    bad_blobs: set[Digest] = field(default_factory=set)
    bad_entries: list[Descriptor] = field(default_factory=list)
    bad_layers: set[Digest] = field(default_factory=set)
    bad_records: set[str] = field(default_factory=set)
    bad_variants: set[Digest] = field(default_factory=set)
    index_unreadable: bool = False
    layout_file_bad: bool = False

    def add(self, kind: str, name: str, what: str) -> None:
        self.problems.append(Problem(kind, name, what))


def _hash_file(path: Path, digest: Digest) -> Digest:
    h = digest.hasher()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_READ):
            h.update(chunk)
    return Digest.from_hash(h)


class _Null:
    def write(self, data: bytes, /) -> int:
        return len(data)


def tree_digest(directory: Path, *, mtime_clamp: int | None = None) -> Digest:
    """The diff_id our layer writer would give `directory` (its uncompressed tar, hashed)."""
    from builder.layer.write import write_layer  # lazily: tarring is fsck's slow part

    return write_layer(directory, _Null(), Compression.NONE, mtime_clamp=mtime_clamp).diff_id


def _max_mtime(directory: Path) -> int:
    from builder.layer.tree import walk

    return max((int(v.st.st_mtime) for v in walk(directory)), default=0)


class Checker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.report = Report()
        self.sound: set[Digest] = set()  # blobs present and hashing to their name
        self.blobs_of: dict[Digest, list[Descriptor]] = {}  # diff_id -> its blobs

    def run(self) -> Report:
        self._layout_file()
        self._blobs()
        self._images()
        self._cache()
        self._variants()
        self._layers()
        return self.report

    def _layout_file(self) -> None:
        path = self.store.paths.oci_layout_file
        try:
            version = json.loads(path.read_bytes()).get("imageLayoutVersion")
        except (OSError, ValueError, AttributeError) as err:
            version = None
            what = f"unreadable: {getattr(err, 'strerror', None) or err}"
        else:
            what = f"imageLayoutVersion is {version!r}, not '1.0.0'"
        if version != "1.0.0":
            self.report.add("index", "oci-layout", what)
            self.report.layout_file_bad = True

    # -- blobs -----------------------------------------------------------------------------

    def _blobs(self) -> None:
        layout = self.store.layout
        for digest in sorted(layout.digests(), key=str):
            self.report.checked["blob"] += 1
            try:
                got = _hash_file(self.store.paths.blob(digest), digest)
            except OSError as err:
                got = None
                self.report.add("blob", str(digest), f"unreadable: {err.strerror}")
            if got == digest:
                self.sound.add(digest)
                continue
            if got is not None:
                self.report.add("blob", str(digest), f"corrupt (content hashes to {got})")
            self.report.bad_blobs.add(digest)

    def _blob_problem(self, digest: Digest) -> str | None:
        if digest in self.sound:
            return None
        if digest in self.report.bad_blobs:
            return f"blob {digest} is corrupt"
        return f"blob {digest} is missing"

    # -- images ----------------------------------------------------------------------------

    def _images(self) -> None:
        try:
            entries = self.store.layout.index().manifests
        except StoreError as err:
            self.report.add("index", "index.json", str(err))
            self.report.index_unreadable = True
            return
        for desc in entries:
            self.report.checked["image"] += 1
            problem = self._image(desc)
            if problem is not None:
                self.report.add("image", ref_of(desc) or str(desc.digest), problem)
                self.report.bad_entries.append(desc)

    def _image(self, desc: Descriptor) -> str | None:
        """What is wrong with the image an index entry names, or None."""
        if (problem := self._blob_problem(desc.digest)) is not None:
            return problem
        if desc.media_type not in _MANIFESTS:
            return None  # an index: its blob is sound; its children are other entries' business
        try:
            manifest = self.store.layout.manifest(desc)
            for blob in (manifest.config, *manifest.layers):
                if (problem := self._blob_problem(blob.digest)) is not None:
                    return problem
            image = self.store.layout.image(desc)  # the config parses, one diff_id a layer
        except (StoreError, FormatError, ValueError) as err:
            return str(err).removesuffix(FSCK_HINT)
        for layer in image.layers:
            self.blobs_of.setdefault(layer.diff_id, []).append(layer.blob)
        return None

    # -- cache and variant records ---------------------------------------------------------

    def _cache(self) -> None:
        cache_dir = self.store.paths.cache
        for key in self.store.cache.stored_keys():
            self.report.checked["cache"] += 1
            problem = None
            try:
                value = json.loads((cache_dir / f"{key}.json").read_bytes())
                if not isinstance(value, dict):
                    raise FormatError("not a JSON object")
                if "layer" in value:  # a step record: the only kind that names blobs
                    record = StepRecord.from_json(value)
                    if record.layer is not None and record.diff_id is not None:
                        problem = self._blob_problem(record.layer.digest)
                        if problem is None:
                            self.blobs_of.setdefault(record.diff_id, []).append(record.layer)
            except (OSError, ValueError) as err:  # FormatError and DigestError are ValueErrors
                problem = f"unreadable record: {err}"
            if problem is not None:
                self.report.add("cache", key, problem)
                self.report.bad_records.add(key)

    def _variants(self) -> None:
        variants_dir = self.store.paths.variants
        for diff_id in sorted(self.store.variants.diff_ids(), key=str):
            for path in sorted((variants_dir / diff_id.hex).glob("*.json")):
                self.report.checked["variant"] += 1
                try:
                    variant = Variant.from_json(json.loads(path.read_bytes()))
                    problem = self._blob_problem(variant.layer.digest)
                    if variant.diff_id != diff_id:
                        problem = f"names the layer {variant.diff_id}"
                except (OSError, ValueError) as err:
                    problem = f"unreadable record: {err}"
                if problem is not None:
                    self.report.add("variant", f"{diff_id}/{path.stem}", problem)
                    self.report.bad_variants.add(diff_id)
                else:
                    self.blobs_of.setdefault(diff_id, []).append(variant.layer)

    # -- unpacked layers -------------------------------------------------------------------

    def _layers(self) -> None:
        for diff_id in sorted(self.store.layers.diff_ids(), key=str):
            self.report.checked["layer"] += 1
            try:
                problem = self._layer(diff_id)
            except (OSError, BuilderError) as err:
                problem = f"unreadable: {getattr(err, 'strerror', None) or err}"
            if problem is not None:
                self.report.add("layer", str(diff_id), problem)
                self.report.bad_layers.add(diff_id)

    def _layer(self, diff_id: Digest) -> str | None:
        directory = self.store.paths.layer(diff_id)
        got = tree_digest(directory)
        if got == diff_id:
            return None  # a layer our writer made: the tar of its dir is the diff_id's
        blob = next((b for b in self.blobs_of.get(diff_id, []) if b.digest in self.sound), None)
        if blob is None:
            return f"the unpacked dir tars to {got}, and no sound blob is left to compare"
        # Made from someone else's tar (other order, headers) or clamped by
        # SOURCE_DATE_EPOCH: compare with a fresh unpack of the verified blob.
        from builder.layer.apply import unpack_layer
        from builder.layer.tree import remove_tree

        staging = self.store.scratch.new_dir("fsck")
        try:
            with self.store.layout.open(blob.digest) as stream:
                unpack_layer(stream, staging / "root", expected_diff_id=diff_id)
            fresh = tree_digest(staging / "root")
            if fresh == got:
                return None
            # A clamp C caps every mtime of the tar at C: the fresh tree's newest mtime.
            clamp = _max_mtime(staging / "root")
            if tree_digest(directory, mtime_clamp=clamp) == fresh:
                return None
        finally:
            remove_tree(staging, ignore_errors=True)
        return f"the unpacked dir differs from its blob {blob.digest} (tars to {got})"


def check(store: Store) -> Report:
    """Check without locks: it only reads (a build running meanwhile adds objects whole,
    by rename, so nothing half-made is seen)."""
    return Checker(store).run()


def repair(store: Store, report: Report) -> None:
    """Remove what `report` found broken. The caller holds the store's locks."""
    layout = store.layout
    if report.layout_file_bad:
        write_atomic(store.paths.oci_layout_file, canonical_json(LAYOUT_VERSION), store.paths.tmp)
    if report.index_unreadable:
        layout.put_index(Index(()))  # every name is lost; gc sweeps what they kept
    elif report.bad_entries:
        bad = {(d.digest, ref_of(d)) for d in report.bad_entries}
        index = layout.index()
        kept = tuple(d for d in index.manifests if (d.digest, ref_of(d)) not in bad)
        layout.put_index(Index(kept, index.annotations))
    for key in report.bad_records:
        store.cache.delete(key)
    for diff_id in report.bad_variants:
        store.variants.delete(diff_id)
    for diff_id in report.bad_layers:
        store.layers.delete(diff_id)
    for digest in report.bad_blobs:
        layout.delete(digest)
