"""disk_usage.directory_bytes: the one measure of a directory's size in reports."""

from __future__ import annotations

from pathlib import Path

from proximadb.storage.disk_usage import directory_bytes


def test_directory_bytes_counts_the_files_directly_in_it(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "b").write_bytes(b"y" * 5)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c").write_bytes(b"z" * 100)  # not directly in it
    (tmp_path / "link").symlink_to(tmp_path / "a")  # not a regular file of its own
    assert directory_bytes(tmp_path) == 15
    assert directory_bytes(tmp_path / "missing") == 0  # a segment removed meanwhile
    assert directory_bytes(tmp_path / "a") == 0  # not a directory
