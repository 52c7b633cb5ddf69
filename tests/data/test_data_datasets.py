"""Dataset parsers (on tiny trees built in tmp dirs), their errors, and image reading."""
import re
from pathlib import Path

import pytest
from PIL import Image

from pfd.data.datasets import DatasetError, build_dataset, canonical_name, split_names
from pfd.image import ImageReadError, read_image


def write_image(path: Path, color=(40, 80, 120), size=(8, 16)) -> Path:
    """A tiny image; the format follows the suffix (.jpg, .tif, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def make_market(root: Path, train=(), query=(), gallery=()) -> Path:
    """A Market-1501-layout folder from lists of file names."""
    for sub, names in (("bounding_box_train", train), ("query", query), ("bounding_box_test", gallery)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            write_image(root / sub / name)
    return root


MARKET_TRAIN = ("0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_000101_01.jpg",
                "0005_c1s1_000201_02.jpg", "-1_c1s1_000001_00.jpg")
MARKET_QUERY = ("0010_c1s1_000101_00.jpg", "0011_c2s1_000101_00.jpg")
MARKET_GALLERY = ("0010_c6s1_000001_01.jpg", "0011_c1s1_000001_01.jpg", "0000_c4s1_000001_01.jpg",
                  "-1_c5s1_000001_01.jpg")


def test_market1501_rules(tmp_path):
    root = make_market(tmp_path / "Market-1501", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"not an image")  # ignored
    ds = build_dataset("market1501", tmp_path)
    assert ds.name == "market1501" and ds.root == str(root)
    # junk (-1) dropped everywhere; train ids 2, 5, 7 relabelled 0, 1, 2 in sorted order
    assert sorted((Path(r.path).name, r.pid, r.camid) for r in ds.train) == [
        ("0002_c1s1_000451_03.jpg", 0, 0), ("0002_c2s1_000551_01.jpg", 0, 1),
        ("0005_c1s1_000201_02.jpg", 1, 0), ("0007_c3s1_000101_01.jpg", 2, 2)]
    assert ds.num_train_pids == 3
    assert [(r.pid, r.camid) for r in ds.query] == [(10, 0), (11, 1)]
    # distractor (0) stays in the gallery, test ids are not relabelled
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(0, 3), (10, 5), (11, 0)]
    assert ds.num_cameras == 6  # max over all splits (c6 only in the gallery)
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in ds.train + ds.query + ds.gallery)
    assert re.search(r"train\s+3 ids\s+4 images", ds.summary())


def test_market_layout_names_and_aliases(tmp_path):
    make_market(tmp_path / "Market-1501-v15.09.15", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    assert build_dataset("Market1501", tmp_path).num_train_pids == 3
    duke = ("0001_c2_f0046182.jpg", "0001_c7_f0046300.jpg", "0003_c8_f0000001.jpg")
    make_market(tmp_path / "Occluded_Duke", duke, ("0004_c1_f0000001.jpg",), ("0004_c2_f0000002.jpg",))
    ds = build_dataset("occ_duke", tmp_path)
    assert ds.name == "occluded_duke" and ds.num_cameras == 8 and ds.num_train_pids == 2
    assert canonical_name("occ_reid") == "occluded_reid"
    make_market(tmp_path / "cuhk03", duke, ("0004_c1_f0000001.jpg",), ("0004_c2_f0000002.jpg",))
    assert build_dataset("cuhk03", tmp_path).name == "cuhk03"


def test_folder_dataset(tmp_path):
    root = make_market(tmp_path / "any" / "place", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    assert len(build_dataset(f"folder:{root}", "/nonexistent").train) == 4
    ds = build_dataset("folder:any/place", tmp_path)  # relative: under ROOT_DIR
    assert ds.name == "folder:any/place" and len(ds.gallery) == 3
    with pytest.raises(DatasetError, match="folder:missing.*bounding_box_train"):
        build_dataset("folder:missing", tmp_path)


def test_unknown_name(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset name 'marker1501'.*market1501"):
        build_dataset("marker1501", tmp_path)


def test_split_names_of_config_fields():
    assert split_names(" market1501, occ_duke ,,") == ["market1501", "occ_duke"]
    assert split_names("market1501", "occ_duke,market1501", "") == ["market1501", "occ_duke"]  # each once, in order
    assert split_names("") == []


def test_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match=r"Market-1501.*bounding_box_train/, query/ and bounding_box_test/"):
        build_dataset("market1501", tmp_path)
    with pytest.raises(DatasetError, match="make it with `python -m pfd.data.synthetic"):
        build_dataset("synthetic", tmp_path)
    root = tmp_path / "DukeMTMC-reID"
    (root / "bounding_box_train").mkdir(parents=True)
    (root / "query").mkdir()
    with pytest.raises(DatasetError, match=f"missing folder.*{root / 'bounding_box_test'}"):
        build_dataset("dukemtmc", tmp_path)


def test_empty_split(tmp_path):
    make_market(tmp_path / "Market-1501", MARKET_TRAIN, (), MARKET_GALLERY)
    with pytest.raises(DatasetError, match="query split is empty.*Market-1501/query"):
        build_dataset("market1501", tmp_path)


def test_only_junk_is_empty(tmp_path):
    make_market(tmp_path / "Market-1501", ("-1_c1s1_000001_00.jpg",), MARKET_QUERY, MARKET_GALLERY)
    with pytest.raises(DatasetError, match="train split is empty"):
        build_dataset("market1501", tmp_path)


def test_bad_names_are_listed(tmp_path):
    bad = [f"img{i}.jpg" for i in range(7)]
    make_market(tmp_path / "Market-1501", MARKET_TRAIN + tuple(bad), MARKET_QUERY, MARKET_GALLERY)
    with pytest.raises(DatasetError, match=r"7 file name\(s\) do not match.*img0\.jpg.*\(and 2 more\)"):
        build_dataset("market1501", tmp_path)


def test_camera_zero_rejected(tmp_path):
    make_market(tmp_path / "Market-1501", ("0002_c0s1_000451_03.jpg",), MARKET_QUERY, MARKET_GALLERY)
    with pytest.raises(DatasetError, match="0002_c0s1_000451_03.jpg.*start at c1"):
        build_dataset("market1501", tmp_path)


def test_query_without_gallery_match_warns(tmp_path):
    make_market(tmp_path / "Market-1501", MARKET_TRAIN, MARKET_QUERY + ("0099_c1s1_000001_00.jpg",), MARKET_GALLERY)
    with pytest.warns(UserWarning, match="1 of 3 queries have no image of their identity"):
        build_dataset("market1501", tmp_path)


def make_msmt(root: Path, lists: dict) -> Path:
    for list_name, lines in lists.items():
        image_dir = "train" if list_name in ("list_train.txt", "list_val.txt") else "test"
        for line in lines:
            write_image(root / image_dir / line.split()[0])
        (root / list_name).write_text("".join(line + "\n" for line in lines))
    (root / "train").mkdir(exist_ok=True)
    (root / "test").mkdir(exist_ok=True)
    return root


MSMT_LISTS = {
    "list_train.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0000/0000_001_05_0303morning_0016_0.jpg 0",
                       "0003/0003_000_15_0303noon_0001_1.jpg 3"],
    "list_val.txt": ["0001/0001_000_02_0303morning_0020_0.jpg 1"],
    "list_query.txt": ["0000/0000_000_03_0113morning_0001_0.jpg 0"],
    "list_gallery.txt": ["0000/0000_001_04_0113morning_0002_0.jpg 0", "0002/0002_000_12_0113noon_0002_0.jpg 2"],
}


def test_msmt17(tmp_path):
    make_msmt(tmp_path / "MSMT17_V1", MSMT_LISTS)
    ds = build_dataset("msmt17", tmp_path)
    # train = list_train + list_val, ids 0, 1, 3 -> 0, 1, 2; camera from the third name field, 0-based
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 0), (0, 4), (1, 1), (2, 14)]
    assert [(r.pid, r.camid) for r in ds.query] == [(0, 2)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(0, 3), (2, 11)]
    assert ds.num_cameras == 15 and ds.num_train_pids == 3
    assert ds.query[0].path == str(tmp_path / "MSMT17_V1" / "test" / "0000" / "0000_000_03_0113morning_0001_0.jpg")


def test_msmt17_errors(tmp_path):
    root = make_msmt(tmp_path / "MSMT17", {**MSMT_LISTS, "list_val.txt": ["0001/0001_000_02_x_0020_0.jpg"]})
    with pytest.raises(DatasetError, match=r"malformed.*list_val.txt:1"):
        build_dataset("msmt17", tmp_path)
    (root / "list_val.txt").write_text("0001/missing_name.jpg 1\n")
    with pytest.raises(DatasetError, match=r"not matching.*list_val.txt:1: 0001/missing_name.jpg"):
        build_dataset("msmt17", tmp_path)
    (root / "list_val.txt").write_text("0001/0001_000_02_0303morning_0099_0.jpg 1\n")
    with pytest.raises(DatasetError, match=r"listed image\(s\) missing.*0001_000_02_0303morning_0099_0.jpg"):
        build_dataset("msmt17", tmp_path)
    (root / "list_val.txt").unlink()
    with pytest.raises(DatasetError, match=r"missing list file .*list_val.txt"):
        build_dataset("msmt17", tmp_path)


def test_occluded_reid(tmp_path):
    root = tmp_path / "Occluded_REID"
    for pid in (1, 2):
        for i in (1, 2):
            write_image(root / "occluded_body_images" / f"{pid:03d}" / f"{pid:03d}_{i:02d}.tif")
            write_image(root / "whole_body_images" / f"{pid:03d}" / f"{pid:03d}_{i:02d}.tif")
    ds = build_dataset("occ_reid", tmp_path)
    assert ds.train == [] and ds.num_cameras == 2
    assert sorted((r.pid, r.camid) for r in ds.query) == [(1, 0), (1, 0), (2, 0), (2, 0)]
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(1, 1), (1, 1), (2, 1), (2, 1)]
    assert all(r.path.endswith(".tif") for r in ds.query)
    write_image(root / "whole_body_images" / "person_x" / "a.tif")
    with pytest.raises(DatasetError, match="not integer identities.*person_x"):
        build_dataset("occluded_reid", tmp_path)


def test_occluded_reid_loose_images(tmp_path):
    root = tmp_path / "Occluded_REID"
    write_image(root / "occluded_body_images" / "001_01.tif")
    write_image(root / "whole_body_images" / "001" / "001_01.tif")
    with pytest.raises(DatasetError, match="holds images directly.*001_01.tif.*one integer-named sub-folder"):
        build_dataset("occluded_reid", tmp_path)


@pytest.mark.parametrize("query_dir", ["occluded_body_images", "partial_body_images"])
def test_partial_reid(tmp_path, query_dir):
    root = tmp_path / "Partial_REID"
    for pid in (1, 5):
        write_image(root / query_dir / f"{pid:03d}_001.jpg")
        write_image(root / "whole_body_images" / f"{pid:03d}_001.jpg")
        write_image(root / "whole_body_images" / f"{pid:03d}_002.jpg")
    ds = build_dataset("partial_reid", tmp_path)
    assert [(r.pid, r.camid) for r in ds.query] == [(1, 0), (5, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(1, 1), (1, 1), (5, 1), (5, 1)]
    write_image(root / query_dir / "oops.jpg")
    with pytest.raises(DatasetError, match="do not match PPP_NNN.jpg.*oops.jpg"):
        build_dataset("partial_reid", tmp_path)


def test_partial_reid_missing_query_folder(tmp_path):
    write_image(tmp_path / "Partial_REID" / "whole_body_images" / "001_001.jpg")
    with pytest.raises(DatasetError, match="occluded_body_images.*partial_body_images"):
        build_dataset("partial_reid", tmp_path)


def test_partial_ilids(tmp_path):
    root = tmp_path / "Partial_iLIDS"
    for pid in (1, 2, 3):
        write_image(root / "Probe" / f"{pid}.jpg")
        write_image(root / "Gallery" / f"{pid}.jpg")
    ds = build_dataset("partial_ilids", tmp_path)
    assert [(r.pid, r.camid) for r in ds.query] == [(1, 0), (2, 0), (3, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(1, 1), (2, 1), (3, 1)]
    (root / "Gallery" / "2.jpg").unlink()
    with pytest.warns(UserWarning, match="1 of 3 queries"):
        build_dataset("partial_ilids", tmp_path)
    for p in (root / "Gallery").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="gallery split is empty.*Gallery"):
        build_dataset("partial_ilids", tmp_path)


def test_shared_cuhk03(cuhk03_root):
    ds = build_dataset(f"folder:{cuhk03_root}", "unused")
    assert (ds.num_train_pids, len(ds.train)) == (743, 7239)
    assert len(ds.query) == 200 and len(ds.gallery) == 738
    assert sorted({r.pid for r in ds.train}) == list(range(743))
    assert {r.pid for r in ds.query} <= {r.pid for r in ds.gallery}


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA"])
def test_read_image_converts_to_rgb(tmp_path, mode):
    image = Image.new("RGB", (6, 4), (200, 100, 50)).convert(mode)
    suffix = ".jpg" if mode in ("L", "CMYK") else ".png"
    path = tmp_path / f"img{suffix}"
    image.save(path)
    out = read_image(path)
    assert out.mode == "RGB" and out.size == (6, 4)
    expected = image.convert("RGB").getpixel((2, 2))
    assert all(abs(a - b) <= 3 for a, b in zip(out.getpixel((2, 2)), expected))


def test_read_palette_with_transparency(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    out = read_image(tmp_path / "p.png")
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (10, 200, 30)


def test_read_image_errors_name_the_path(tmp_path):
    corrupt = tmp_path / "0001_c1s1_000001_00.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ImageReadError, match=f"cannot decode image {corrupt}"):
        read_image(corrupt)
    truncated = write_image(tmp_path / "t.jpg", size=(64, 128))
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ImageReadError, match="t.jpg"):
        read_image(truncated)
    with pytest.raises(ImageReadError, match="not found.*nope.jpg"):
        read_image(tmp_path / "nope.jpg")
