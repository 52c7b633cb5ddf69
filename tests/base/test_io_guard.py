"""The output guard: new or ours is written, a user's file or folder is refused and left as it was."""
import pytest

from pfd.errors import InvalidInputError, OutputExistsError, UserError, outputs_kept, user_errors
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


def refused_command(*steps) -> None:
    """Run `steps` (callables) as a command that then fails on a user's input: one line, exit status 2."""
    with pytest.raises(SystemExit) as exit_info, user_errors():
        for step in steps:
            step()
        raise InvalidInputError("bad input")
    assert exit_info.value.code == 2


def test_a_refused_command_leaves_no_folder_it_made(tmp_path, capsys):
    """What a command claimed while starting is undone when its input is then refused: the new folder
    (marker and log), the folders made above it, and a picture's new folder; a user's empty folder stays."""
    empty = tmp_path / "empty"
    empty.mkdir()
    refused_command(lambda: claim_output_dir(tmp_path / "a" / "b" / "run", "run"),
                    lambda: (tmp_path / "a" / "b" / "run" / "log.txt").write_text("started\n"),
                    lambda: claim_output_dir(empty, "eval"),
                    lambda: claim_output_file(tmp_path / "pics" / "x.png", lambda _: False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and list(empty.iterdir()) == []
    assert capsys.readouterr().err == "error: bad input\n"


def test_what_the_work_made_is_kept(tmp_path, capsys):
    """A folder holding more than its start-up files, anything claimed before `outputs_kept()`, and claims
    outside a command (library use) are never undone."""
    refused_command(lambda: claim_output_dir(tmp_path / "cache", "pose_cache"),
                    lambda: (tmp_path / "cache" / "poses.npz").write_bytes(b"x"))
    refused_command(lambda: claim_output_dir(tmp_path / "run", "run"), outputs_kept)
    claim_output_dir(tmp_path / "library", "index")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "library", "run"]
    assert output_kind(tmp_path / "run") == "run" and (tmp_path / "cache" / "poses.npz").exists()
