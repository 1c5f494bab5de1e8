"""The build context: docker's COPY source/destination rules, keys from content only."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import builder.engine.context as context_module
from builder.engine.context import (
    DIGEST_BATCH,
    RACY_LIMIT,
    BuildContext,
    ContextEntry,
    CopyItem,
    Snapshot,
    copy_digest,
)
from builder.errors import BuildContextError


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "a.txt").write_text("a")
    (root / "src" / "sub" / "b.txt").write_text("b")
    (root / "top.txt").write_text("top")
    (root / "link").symlink_to("top.txt")
    return root


def _targets(context: BuildContext, sources: tuple[str, ...], dest: str) -> list[str]:
    return sorted(item.target for item in context.plan_copy(sources, dest))


def test_a_directory_source_copies_its_contents(ctx: Path) -> None:
    context = BuildContext(ctx)
    assert _targets(context, ("src",), "/app") == [
        "/app",
        "/app/a.txt",
        "/app/sub",
        "/app/sub/b.txt",
    ]


def test_a_file_lands_at_dest_or_inside_a_dest_dir(ctx: Path) -> None:
    context = BuildContext(ctx)
    (single,) = context.plan_copy(("top.txt",), "/etc/conf")
    assert single.target == "/etc/conf" and single.into_existing_dir
    assert _targets(context, ("top.txt",), "/etc/") == ["/etc/top.txt"]
    assert _targets(context, ("top.txt", "src/a.txt"), "/d") == ["/d/a.txt", "/d/top.txt"]


def test_wildcards_follow_go_filepath_match(ctx: Path) -> None:
    context = BuildContext(ctx)
    assert _targets(context, ("src/*.txt",), "/d/") == ["/d/a.txt"]
    assert _targets(context, ("*.txt",), "/d/") == ["/d/top.txt"]  # '*' does not cross '/'
    assert _targets(context, ("t?p.txt",), "/d/") == ["/d/top.txt"]


def test_sources_cannot_leave_the_context(ctx: Path) -> None:
    context = BuildContext(ctx)
    # `..` is cleaned against the context root, as docker does: it names the root's own file.
    assert _targets(context, ("../../top.txt",), "/d/") == ["/d/top.txt"]
    with pytest.raises(BuildContextError, match='"/etc/passwd": not found'):
        context.plan_copy(("../etc/passwd",), "/d/")


def test_a_path_through_a_symlinked_dir_is_followed_inside_the_context(ctx: Path) -> None:
    # BuildKit's testCopyThroughSymlinkContext: `COPY link/foo .` with link -> sub.
    (ctx / "dirlink").symlink_to("src/sub")
    assert _targets(BuildContext(ctx), ("dirlink/b.txt",), "/d/") == ["/d/b.txt"]
    assert _targets(BuildContext(ctx), ("dirlink/*.txt",), "/d/") == ["/d/b.txt"]
    # A link that climbs out stops at the context's root: it names the context's own dir.
    (ctx / "up").symlink_to("../../../src")
    assert _targets(BuildContext(ctx), ("up/sub/b.txt",), "/d/") == ["/d/b.txt"]
    (ctx / "abs").symlink_to("/etc")
    with pytest.raises(BuildContextError, match='"/abs/passwd": not found'):
        BuildContext(ctx).plan_copy(("abs/passwd",), "/d/")


def test_wildcards_may_match_nothing_a_literal_may_not(ctx: Path) -> None:
    # BuildKit's testEmptyWildcard: `COPY foo nomatch* /` copies foo.
    assert _targets(BuildContext(ctx), ("top.txt", "nomatch*"), "/") == ["/top.txt"]
    assert BuildContext(ctx).plan_copy(("nomatch*",), "/d/") == []
    with pytest.raises(BuildContextError) as info:
        BuildContext(ctx).plan_copy(("nomatch",), "/d/")
    assert str(info.value) == (
        'failed to compute cache key: failed to calculate checksum of ref context: "/nomatch":'
        " not found"
    )


def test_a_named_symlink_is_followed_inside_the_context_only(ctx: Path) -> None:
    (item,) = BuildContext(ctx).plan_copy(("link",), "/l")
    assert (item.entry.kind, item.entry.path, item.target) == ("file", "top.txt", "/l")
    (item,) = BuildContext(ctx).plan_copy(("link",), "/d/")
    assert item.target == "/d/link"  # the link's name, the target's content
    (ctx / "src" / "dirlink").symlink_to("sub")
    assert _targets(BuildContext(ctx), ("src/dirlink",), "/x") == ["/x", "/x/b.txt"]
    (ctx / "out").symlink_to("/etc/passwd")
    with pytest.raises(BuildContextError, match="not in the build context"):
        BuildContext(ctx).plan_copy(("out",), "/x")
    (ctx / "up").symlink_to("../../../../etc")
    with pytest.raises(BuildContextError, match="not in the build context"):
        BuildContext(ctx).plan_copy(("up",), "/x")


def test_symlinks_inside_a_copied_dir_stay_links(ctx: Path) -> None:
    (ctx / "src" / "inner").symlink_to("/etc/passwd")
    items = {i.target: i.entry for i in BuildContext(ctx).plan_copy(("src",), "/app")}
    assert items["/app/inner"].kind == "symlink"
    assert items["/app/inner"].digest == "/etc/passwd"


def test_ignored_files_are_invisible(ctx: Path) -> None:
    class IgnoreTxtInSrc:
        def excludes(self, rel_path: str) -> bool:
            return rel_path.startswith("src/") and rel_path.endswith(".txt")

    context = BuildContext(ctx, IgnoreTxtInSrc())
    assert _targets(context, ("src",), "/app") == ["/app", "/app/sub"]
    with pytest.raises(BuildContextError):
        context.plan_copy(("src/a.txt",), "/x")


def test_key_depends_on_content_not_on_mtime_or_location(ctx: Path, tmp_path: Path) -> None:
    key = copy_digest(BuildContext(ctx).plan_copy(("src",), "/app"))
    clone = tmp_path / "elsewhere" / "clone"
    shutil.copytree(ctx, clone, symlinks=True)
    for path in clone.rglob("*"):
        os.utime(path, (1, 1), follow_symlinks=False)
    assert copy_digest(BuildContext(clone).plan_copy(("src",), "/app")) == key
    (clone / "src" / "a.txt").write_text("changed")
    assert copy_digest(BuildContext(clone).plan_copy(("src",), "/app")) != key
    (clone / "src" / "a.txt").write_text("a")
    (clone / "src" / "a.txt").chmod(0o600)
    assert copy_digest(BuildContext(clone).plan_copy(("src",), "/app")) != key


def test_memo_reuses_digests_of_unchanged_files_only(ctx: Path) -> None:
    first = BuildContext(ctx)
    digest = first.entries["top.txt"].digest
    assert first.hashed == 3
    # A memo made well after the files last changed: its digests are trusted. A planted
    # digest shows the file was not read again.
    memo = dict(first.new_memo)
    memo["top.txt"] = (*memo["top.txt"][:4], "planted")
    later = first.walked_ns + 10 * 10**9
    again = BuildContext(ctx, memo=memo, memo_made_ns=later)
    assert again.entries["top.txt"].digest == "planted"
    assert again.hashed == 0 and not again.memo_changed()
    # A memo made within a second of the file's last change may hide a later write in the
    # same clock tick (racy): not trusted, even though every stat field matches.
    racy = BuildContext(ctx, memo=memo, memo_made_ns=first.walked_ns)
    assert racy.entries["top.txt"].digest == digest and racy.hashed == 3
    # Any write changes ctime (and here size): the file is read again.
    (ctx / "top.txt").write_text("new content")
    changed = BuildContext(ctx, memo=memo, memo_made_ns=later)
    assert changed.entries["top.txt"].digest not in ("planted", digest)
    assert changed.hashed == 1 and not changed.memo_changed()  # (MEMO_FILES, MEMO_BYTES)


def test_the_memo_is_written_when_reading_again_would_cost_more(
    ctx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few small files read again cost less than the memo's write (every entry's JSON,
    two fsyncs); many files, or many bytes, more."""
    first = BuildContext(ctx)
    assert first.entries and first.hashed == 3 and not first.memo_changed()
    monkeypatch.setattr(context_module, "MEMO_FILES", 2)
    assert first.memo_changed()
    monkeypatch.undo()
    (ctx / "big.bin").write_bytes(b"x" * (context_module.MEMO_BYTES + 1))
    big = BuildContext(ctx)
    assert big.entries and big.memo_changed()
    # Kept after a small change, the memo stays right: the changed file is read again.
    later = big.walked_ns + 10 * 10**9
    (ctx / "top.txt").write_text("changed")
    again = BuildContext(ctx, memo=big.new_memo, memo_made_ns=later)
    assert again.entries["top.txt"].digest == hashlib.sha256(b"changed").hexdigest()
    assert again.hashed == 1 and not again.memo_changed()


def test_memo_entry_reused_only_when_every_stat_field_matches(ctx: Path) -> None:
    first = BuildContext(ctx)
    digest = first.entries["top.txt"].digest
    later = first.walked_ns + 10 * 10**9
    size, mtime, ino, ctime, _digest = first.new_memo["top.txt"]
    planted = [size, mtime, ino, ctime, "planted"]
    assert (
        BuildContext(ctx, memo={"top.txt": planted}, memo_made_ns=later).entries["top.txt"].digest
        == "planted"
    )
    for field in range(4):  # size, mtime, inode, ctime: any one off and the file is read
        off = list(planted)
        off[field] += 1
        again = BuildContext(ctx, memo={"top.txt": off}, memo_made_ns=later)
        assert again.entries["top.txt"].digest == digest and again.hashed == 3
    for damaged in ([size, mtime, ino, ctime], [], [*planted, "more"]):  # a bad record: no error
        again = BuildContext(ctx, memo={"top.txt": damaged}, memo_made_ns=later)
        assert again.entries["top.txt"].digest == digest


def test_copy_digest_is_one_line_per_item_across_batches() -> None:
    """The key's format (tests/engine/golden pins it) does not depend on how many lines
    are hashed at once: more items than a batch, a name that is not UTF-8 among them."""
    items = [
        CopyItem(
            ContextEntry(f"f{i}-\udcff", "file", 0o644, 1, 0, f"{i:064x}"), f"/app/f{i}-\udcff"
        )
        for i in range(DIGEST_BATCH + 3)
    ]
    lines = b"".join(
        f"{it.target}\0{it.entry.kind}\0{it.entry.mode:o}\0{it.entry.digest}\n".encode(
            "utf-8", "surrogateescape"
        )
        for it in items
    )
    assert copy_digest(items) == hashlib.sha256(lines).hexdigest()
    assert b"-\xff\x00file\x00644\x00" in lines


def _aged(snapshot: Snapshot | None, copies: dict[str, str] | None = None) -> Snapshot:
    """`snapshot` as if made 10 s later (its files then past the racy second), with its
    digests planted (proof that a digest came from it, not from a walk)."""
    assert snapshot is not None
    planted = copies or dict.fromkeys(snapshot.copies, "planted")
    return Snapshot(snapshot.made_ns + 10 * 10**9, snapshot.signature, planted)


def test_snapshot_gives_a_copy_digest_without_a_walk_only_while_nothing_changed(
    ctx: Path,
) -> None:
    first = BuildContext(ctx)
    key = first.copy_key(("src",), "/app")
    assert key == copy_digest(first.plan_copy(("src",), "/app"))
    snapshot = _aged(first.snapshot_to_save())
    again = BuildContext(ctx, snapshot=snapshot)
    assert again.copy_key(("src",), "/app") == "planted"
    assert again.walked_ns == 0 and again.snapshot_to_save() is None  # no full walk
    # Another COPY of the same context: digested by a walk, and kept beside the first.
    other = again.copy_key(("top.txt",), "/t")
    assert other == copy_digest(BuildContext(ctx).plan_copy(("top.txt",), "/t"))
    merged = again.snapshot_to_save()
    assert merged is not None and set(merged.copies.values()) == {"planted", other}
    # Made within a second of the files' last change (racy): a write in the same clock
    # tick could leave every stat field as it was, so those files are read again. As they
    # were: trusted.
    racy = first.snapshot_to_save()
    assert racy is not None and len(racy.racy) == 4  # every file and the link: all new
    planted = dict.fromkeys(racy.copies, "planted")
    racy = Snapshot(racy.made_ns, racy.signature, planted, racy.racy)
    assert BuildContext(ctx, snapshot=racy).copy_key(("src",), "/app") == "planted"
    # What a write that kept every stat field would show: another content. Not trusted.
    for name, then in racy.racy.items():
        changed = Snapshot(racy.made_ns, racy.signature, planted, {**racy.racy, name: "0" * 64})
        again = BuildContext(ctx, snapshot=changed)
        assert again.copy_key(("src",), "/app") == key and again.walked_ns > 0, (name, then)


def test_a_plan_after_a_snapshot_key_is_keyed_by_what_it_plans(ctx: Path) -> None:
    """The context changed between the snapshot's check and the plan of a COPY that
    missed the cache: the layer is keyed by what it holds, not by the snapshot's digest."""
    first = BuildContext(ctx)
    key = first.copy_key(("src",), "/app")
    items, planned = first.plan_keyed(("src",), "/app", key)
    assert planned == key == copy_digest(items)  # the walk's own key: kept
    again = BuildContext(ctx, snapshot=_aged(first.snapshot_to_save()))
    assert again.copy_key(("src",), "/app") == "planted"
    (ctx / "src" / "a.txt").write_text("changed after the check")
    items, planned = again.plan_keyed(("src",), "/app", "planted")
    assert (
        planned == copy_digest(items) == copy_digest(BuildContext(ctx).plan_copy(("src",), "/app"))
    )
    assert planned not in ("planted", key)
    saved = again.snapshot_to_save()
    assert saved is not None and list(saved.copies.values()) == [planned]


def test_a_racy_symlink_is_read_again(ctx: Path) -> None:
    first = BuildContext(ctx)
    key = first.copy_key(("link",), "/l")
    racy = first.snapshot_to_save()
    assert racy is not None and racy.racy["link"] == "@top.txt"
    planted = dict.fromkeys(racy.copies, "planted")
    same = Snapshot(racy.made_ns, racy.signature, planted, racy.racy)
    assert BuildContext(ctx, snapshot=same).copy_key(("link",), "/l") == "planted"
    other = Snapshot(racy.made_ns, racy.signature, planted, {"link": "@src/a.txt"})
    assert BuildContext(ctx, snapshot=other).copy_key(("link",), "/l") == key


def test_no_snapshot_when_too_many_files_are_racy(ctx: Path) -> None:
    for i in range(RACY_LIMIT):
        (ctx / f"new{i}.txt").write_text("n")
    context = BuildContext(ctx)
    context.copy_key((".",), "/all")
    assert context.snapshot_to_save() is None
    context = BuildContext(ctx)
    context.copy_key(("src",), "/app")  # a COPY of a part: the whole context counts
    assert context.snapshot_to_save() is None


def _rewrite_keeping_mtime(context: Path) -> None:
    """New content of the same size, the old mtime put back: only the ctime shows it."""
    path = context / "src" / "a.txt"
    st = path.stat()
    path.write_text("A")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize(
    "change",
    [
        lambda c: (c / "src" / "a.txt").write_text("A"),  # same size, new content
        lambda c: (c / "src" / "a.txt").chmod(0o600),
        lambda c: (c / "src" / "new.txt").write_text("n"),
        lambda c: (c / "src" / "a.txt").unlink(),
        lambda c: (c / "src" / "a.txt").rename(c / "src" / "z.txt"),
        lambda c: (c / "src" / "sub" / "deeper").mkdir(),
        lambda c: ((c / "link").unlink(), (c / "link").symlink_to("src/a.txt")),
        lambda c: os.utime(c / "src" / "sub" / "b.txt", ns=(0, 0)),
        _rewrite_keeping_mtime,
    ],
    ids=[
        "content",
        "chmod",
        "added",
        "removed",
        "renamed",
        "new-dir",
        "relinked",
        "mtime",
        "content-mtime-kept",
    ],
)
def test_snapshot_is_not_used_after_any_change(ctx: Path, change: Any) -> None:
    first = BuildContext(ctx)
    first.copy_key(("src", "link"), "/app/")
    snapshot = _aged(first.snapshot_to_save())
    change(ctx)  # before the snapshot's (aged) time: only the signature can tell
    again = BuildContext(ctx, snapshot=snapshot)
    key = again.copy_key(("src", "link"), "/app/")
    assert key != "planted" and again.walked_ns > 0
    fresh = BuildContext(ctx)
    assert key == fresh.copy_key(("src", "link"), "/app/")
    # The check's walk, taken for the full one, finds what a walk of its own finds.
    assert again.entries == fresh.entries and again.new_memo == fresh.new_memo
    saved, walked = again.snapshot_to_save(), fresh.snapshot_to_save()
    assert saved is not None and walked is not None and saved.signature == walked.signature


def test_a_changed_context_is_walked_once(ctx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshot check that finds a change hands its walk to the full one (a changed
    build of a big context walked it twice)."""
    first = BuildContext(ctx)
    first.copy_key(("src",), "/app/")
    snapshot = _aged(first.snapshot_to_save())
    (ctx / "src" / "sub" / "b.txt").write_text("B")  # read again, in a dir below the root
    walks: list[Path] = []
    real = context_module.walk_listings

    def counted(top: Path) -> Any:
        walks.append(top)
        return real(top)

    monkeypatch.setattr(context_module, "walk_listings", counted)
    again = BuildContext(ctx, snapshot=snapshot)
    key = again.copy_key(("src",), "/app/")
    assert len(walks) == 1
    assert key == copy_digest(BuildContext(ctx).plan_copy(("src",), "/app/"))
    assert again.entries["src/sub/b.txt"].digest == hashlib.sha256(b"B").hexdigest()


class _TxtInSrc:
    def excludes(self, rel_path: str) -> bool:
        return rel_path.startswith("src/") and rel_path.endswith(".txt")


def test_snapshot_covers_the_ignore_rules_and_sources(ctx: Path) -> None:
    first = BuildContext(ctx, _TxtInSrc(), ignore_text="src/*.txt")
    first.copy_key(("src",), "/app")
    snapshot = _aged(first.snapshot_to_save())
    same = BuildContext(ctx, _TxtInSrc(), snapshot=snapshot, ignore_text="src/*.txt")
    assert same.copy_key(("src",), "/app") == "planted"
    assert same.copy_key(("src",), "/elsewhere") != "planted"
    rules = BuildContext(ctx, snapshot=snapshot, ignore_text="")
    assert rules.copy_key(("src",), "/app") != "planted"
    # An ignored file's change does not matter; a visible one's does.
    (ctx / "src" / "a.txt").write_text("ignored")
    assert (
        BuildContext(ctx, _TxtInSrc(), snapshot=snapshot, ignore_text="src/*.txt").copy_key(
            ("src",), "/app"
        )
        == "planted"
    )


def test_snapshot_from_a_damaged_record_is_none() -> None:
    good = Snapshot(1, "sig", {"=a": "d"}).to_json()
    assert Snapshot.from_json(good) is not None
    for damaged in (
        {},
        {**good, "version": 0},
        {**good, "copies": {"=a": 1}},
        {**good, "made_ns": "1"},
    ):
        assert Snapshot.from_json(damaged) is None
