"""restorer.fs: files and folders appear whole or not at all, under one temporary-name scheme, and an
existing output is refused with one wording."""

from __future__ import annotations

import pytest

from restorer.errors import OutputError
from restorer.fs import (
    atomic_folder,
    atomic_path,
    open_atomic,
    partial_name,
    refuse_existing,
    stale_partials,
    write_json_atomic,
)


def test_partial_names_are_hidden_siblings_that_keep_the_suffix_and_never_repeat(tmp_path):
    a, b = partial_name(tmp_path / "film.mkv"), partial_name(tmp_path / "film.mkv")
    assert a != b and a.parent == tmp_path and a.suffix == ".mkv" and a.name.startswith(".film.partial-")
    a.write_bytes(b"x"), b.write_bytes(b"x")
    (tmp_path / ".film.v2.partial-1-ab.mkv").write_bytes(b"another output's")
    (tmp_path / ".film.partial-1-ab.mp4").write_bytes(b"another suffix")
    assert stale_partials(tmp_path / "film.mkv") == sorted([a, b])


def test_a_failed_write_leaves_neither_the_final_name_nor_a_partial(tmp_path):
    final = tmp_path / "report.json"
    with pytest.raises(RuntimeError), open_atomic(final, "w") as f:
        f.write("half")
        raise RuntimeError
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(final, {"a": 1})
    assert final.read_text() == '{\n "a": 1\n}' and list(tmp_path.iterdir()) == [final]


def test_a_folder_replaces_the_old_one_only_when_complete(tmp_path):
    final = tmp_path / "checkpoint-000010"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(final) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000010"]
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    killed = partial_name(final)  # left by a killed writer of the same folder
    killed.mkdir()
    with atomic_folder(final) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000010"]
    assert [p.name for p in final.iterdir()] == ["new.txt"]


def test_an_existing_output_is_refused_with_one_wording(tmp_path):
    out = tmp_path / "o.mkv"
    refuse_existing(out)  # nothing there
    out.write_bytes(b"the user's")
    refuse_existing(out, overwrite=True)
    with pytest.raises(OutputError) as err:
        refuse_existing(out)
    assert str(err.value) == f"{out}: output exists — pass --overwrite to replace it"
    with pytest.raises(OutputError) as err:
        refuse_existing(out, instead="choose another name")
    assert str(err.value) == f"{out}: output exists — pass --overwrite to replace it, or choose another name"
    assert err.value.exit_code == 2
