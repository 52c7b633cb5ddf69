"""The output guard: new or ours is written, a user's file or folder is refused and left as it was."""
import pytest

from pfd.errors import OutputExistsError, UserError
from pfd.io import OUTPUT_MARKER, claim_output_dir, claim_output_file, foreign_entries, output_kind


def test_a_new_or_empty_folder_becomes_ours(tmp_path):
    new, empty = tmp_path / "a" / "run", tmp_path / "empty"
    empty.mkdir()
    assert claim_output_dir(new, "run") == new and output_kind(new) == "run"
    assert claim_output_dir(empty, "index") == empty and output_kind(empty) == "index"
    assert claim_output_dir(new, "run") == new  # ours: claimed again


def test_a_users_folder_is_refused_and_left_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"notes\.txt.*choose another") as err:
        claim_output_dir(tmp_path, "run")
    assert isinstance(err.value, UserError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no marker was added


def test_our_folder_of_another_kind_is_refused_unless_shared(tmp_path):
    claim_output_dir(tmp_path / "run", "run")
    with pytest.raises(OutputExistsError, match="pfd run folder, not a index folder"):
        claim_output_dir(tmp_path / "run", "index")
    assert claim_output_dir(tmp_path / "run", "eval", shares=("run",)) == tmp_path / "run"
    assert output_kind(tmp_path / "run") == "run"  # sharing does not re-mark it


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "x").write_text("mine")
    with pytest.raises(OutputExistsError, match="is not a folder"):
        claim_output_dir(tmp_path / "x", "run")


def test_adopt_recognizes_an_older_folder_of_ours(tmp_path):
    (tmp_path / "last.pth").write_bytes(b"x")
    assert claim_output_dir(tmp_path, "run", adopt=lambda p: (p / "last.pth").exists()) == tmp_path
    assert output_kind(tmp_path) == "run"


def test_foreign_entries_lists_what_we_did_not_make(tmp_path):
    claim_output_dir(tmp_path, "synthetic")
    (tmp_path / "query").mkdir()
    (tmp_path / "query" / "0001_c1_0.jpg").write_bytes(b"x")
    (tmp_path / "query" / "notes.txt").write_text("mine")
    (tmp_path / "keypoints.json").write_text("{}")
    assert foreign_entries(tmp_path, ["keypoints.json", "query/*.jpg"]) == ["query/notes.txt"]


def test_a_single_output_file(tmp_path):
    ours = lambda p: p.read_bytes().startswith(b"pfd")  # noqa: E731
    assert claim_output_file(tmp_path / "new" / "a.png", ours) == tmp_path / "new" / "a.png"
    (tmp_path / "mine.png").write_bytes(b"user")
    with pytest.raises(OutputExistsError, match="not a picture written by pfd"):
        claim_output_file(tmp_path / "mine.png", ours, what="picture")
    assert (tmp_path / "mine.png").read_bytes() == b"user"
    (tmp_path / "old.png").write_bytes(b"pfd picture")
    assert claim_output_file(tmp_path / "old.png", ours) == tmp_path / "old.png"
    with pytest.raises(OutputExistsError, match="is a folder"):
        claim_output_file(tmp_path / "new", ours)


def test_a_single_file_never_lands_inside_our_folders(tmp_path):
    index = claim_output_dir(tmp_path / "index", "index")
    (index / "meta.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="inside a pfd index folder"):
        claim_output_file(index / "meta.json", lambda p: True)
    assert (index / "meta.json").read_text() == "{}"
    assert OUTPUT_MARKER in {p.name for p in index.iterdir()}
