"""gitread against real repositories: listing, incremental change sets, fallbacks, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from projections.codeindex.errors import RepositoryError
from projections.codeindex.gitread import (
    BlobEntry,
    Delta,
    change_set,
    chunked,
    entry_kind,
    list_blobs,
    open_repository,
    plan_changes,
    read_blobs,
    resolve_head,
)
from tests.projections.codeindex.gitrepos import GitRepo, Link, Submodule

FILE, EXE, LINK, SUB = 0o100644, 0o100755, 0o120000, 0o160000


# -- pure helpers ----------------------------------------------------------------------------


def test_entry_kinds() -> None:
    assert [entry_kind(m) for m in (FILE, EXE, LINK, SUB, 0o040000, 0)] == [
        "file",
        "file",
        "symlink",
        "submodule",
        "tree",
        "other",
    ]


def test_a_rename_is_a_removal_and_an_addition() -> None:
    planned = plan_changes([Delta("R", "old.py", "new.py", FILE, FILE, "b" * 40)])
    assert planned.to_index == (("new.py", "b" * 40, FILE),)
    assert planned.removed == ("old.py",)


def test_type_changes_remove_files_and_skip_links() -> None:
    planned = plan_changes(
        [
            Delta("T", "a", "a", FILE, LINK, "1" * 40),  # a file became a symlink
            Delta("T", "b", "b", LINK, FILE, "2" * 40),  # a symlink became a file
            Delta("A", "vendor/lib", "vendor/lib", 0, SUB, "3" * 40),
            Delta("D", "gone", "gone", LINK, 0, "0" * 40),  # a symlink was never indexed: nothing to remove
        ]
    )
    assert planned.to_index == (("b", "2" * 40, FILE),)
    assert planned.removed == ("a",)
    assert [(s.path, s.reason.split(":")[0]) for s in planned.skipped] == [
        ("a", "a symbolic link"),
        ("vendor/lib", "a submodule"),
    ]


def test_a_file_deleted_and_added_back_under_the_same_path_is_indexed_not_removed() -> None:
    planned = plan_changes([Delta("D", "x", "x", FILE, 0, "0" * 40), Delta("A", "x", "x", 0, FILE, "4" * 40)])
    assert planned.to_index == (("x", "4" * 40, FILE),) and planned.removed == ()


def test_chunks_are_bounded_by_count_and_bytes() -> None:
    entries = [BlobEntry(f"f{i}", "0" * 40, size) for i, size in enumerate([10, 10, 10, 100, 5, 5, 5, 5])]
    runs = [[e.path for e in run] for run in chunked(entries, max_files=3, max_bytes=50)]
    assert runs == [["f0", "f1", "f2"], ["f3"], ["f4", "f5", "f6"], ["f7"]]
    with pytest.raises(ValueError, match="at least one file"):
        list(chunked(entries, max_files=0, max_bytes=1))


# -- real repositories ---------------------------------------------------------------------


def test_lists_every_regular_file_and_says_why_others_are_left_out(tmp_path: Path) -> None:
    git = GitRepo(tmp_path / "work")
    commit = git.commit(
        {
            "README.md": b"# hi\n",
            "src/pkg/app.py": b"print('x')\n",
            "src/pkg/link.py": Link("app.py"),
            "vendor/dep": Submodule("5" * 40),
        }
    )
    repo = open_repository(tmp_path / "work")
    assert resolve_head(repo) == commit == resolve_head(repo, "main")
    blobs, skipped = list_blobs(repo, commit)
    assert [(b.path, b.size) for b in blobs] == [("README.md", 5), ("src/pkg/app.py", 11)]
    assert read_blobs(repo, blobs) == [b"# hi\n", b"print('x')\n"]
    assert [s.path for s in skipped] == ["src/pkg/link.py", "vendor/dep"]


def test_a_bare_mirror_opens_too(tmp_path: Path) -> None:
    git = GitRepo(tmp_path / "mirror.git", bare=True)
    commit = git.commit({"a.py": b"a = 1\n"})
    repo = open_repository(tmp_path / "mirror.git")
    assert repo.is_bare and resolve_head(repo) == commit


def test_the_change_set_between_two_commits(tmp_path: Path) -> None:
    git = GitRepo(tmp_path / "r")
    first = git.commit({"keep.py": b"k\n", "edit.py": b"1\n", "old/name.py": b"same\n", "drop.txt": b"bye\n"})
    second = git.commit({"keep.py": b"k\n", "edit.py": b"2\n", "new/name.py": b"same\n", "added.md": b"+\n"})
    changes = change_set(open_repository(tmp_path / "r"), second, first)
    assert not changes.full and changes.previous == first
    assert [e.path for e in changes.to_index] == ["added.md", "edit.py", "new/name.py"]
    assert changes.removed == ("drop.txt", "old/name.py")
    assert [e.size for e in changes.to_index] == [2, 2, 5]


def test_no_previous_means_a_full_index(tmp_path: Path) -> None:
    git = GitRepo(tmp_path / "r")
    commit = git.commit({"a.py": b"1\n", "b/c.py": b"2\n"})
    changes = change_set(open_repository(tmp_path / "r"), commit)
    assert changes.full and changes.full_reason == ""
    assert [e.path for e in changes.to_index] == ["a.py", "b/c.py"] and changes.removed == ()


def test_rewritten_history_falls_back_to_a_full_index(tmp_path: Path) -> None:
    git = GitRepo(tmp_path / "r")
    old = git.commit({"a.py": b"1\n", "b.py": b"2\n"})
    rewritten = git.commit({"a.py": b"1\n", "c.py": b"3\n"}, parents=[])  # a force-push of unrelated history
    repo = open_repository(tmp_path / "r")
    changes = change_set(repo, rewritten, old)
    assert changes.full and "not an ancestor" in changes.full_reason
    assert [e.path for e in changes.to_index] == ["a.py", "c.py"] and changes.removed == ()
    unknown = change_set(repo, rewritten, "f" * 40)  # gone after the rewrite and a gc
    assert unknown.full and "not in the repository" in unknown.full_reason


def test_missing_paths_and_non_repositories_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        open_repository(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RepositoryError, match="is not a git repository"):
        open_repository(tmp_path / "plain")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RepositoryError, match="is a file"):
        open_repository(tmp_path / "file")


def test_a_folder_inside_a_repository_is_not_that_repository(tmp_path: Path) -> None:
    GitRepo(tmp_path / "outer").commit({"a": b"1\n"})
    (tmp_path / "outer" / "inner").mkdir()
    with pytest.raises(RepositoryError, match="is not a git repository"):
        open_repository(tmp_path / "outer" / "inner")


def test_unknown_commits_branches_and_empty_repositories(tmp_path: Path) -> None:
    git = GitRepo(tmp_path / "r")
    repo = open_repository(tmp_path / "r")
    with pytest.raises(RepositoryError, match="no commits yet"):
        resolve_head(repo)
    git.commit({"a": b"1\n"})
    with pytest.raises(RepositoryError, match="no branch 'dev'"):
        resolve_head(repo, "dev")
    with pytest.raises(RepositoryError, match="is not in repository"):
        change_set(repo, "e" * 40)
    with pytest.raises(RepositoryError, match="is not in repository"):
        change_set(repo, "not-a-commit")
