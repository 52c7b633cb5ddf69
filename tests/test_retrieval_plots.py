"""The plots are real PNGs of the documented pixel size, written without leftovers."""
import numpy as np
import pytest
from PIL import Image

from pfd.retrieval.plots import plot_cmc, plot_ranked_lists, ranked_grid_size


def test_cmc_png(tmp_path):
    cmc = np.minimum(1.0, np.linspace(0.6, 1.2, 50))
    path = plot_cmc(cmc, tmp_path / "out" / "cmc.png", label="PFD", size_px=(500, 400))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (500, 400)
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 5  # something was drawn
    assert [p.name for p in path.parent.iterdir()] == ["cmc.png"]
    with pytest.raises(ValueError, match="non-empty"):
        plot_cmc([], tmp_path / "x.png")


def test_ranked_list_grid(tmp_path):
    colours = [(200, 200, 200), (30, 30, 30), (120, 60, 10)]
    paths = []
    for i, colour in enumerate(colours):
        paths.append(tmp_path / f"img{i}.jpg")
        Image.new("RGB", (32, 64), colour).save(paths[-1])
    query_paths, query_pids = [str(paths[0]), str(paths[1])], [1, 2]
    gallery_paths, gallery_pids = [str(p) for p in paths], [1, 2, 3]
    ranked = np.array([[0, 2, 1, -1], [1, 0, 2, 0]])
    out = plot_ranked_lists(query_paths, query_pids, gallery_paths, gallery_pids, ranked, tmp_path / "ranks.png",
                            topk=4, image_hw=(64, 32))
    with Image.open(out) as im:
        assert im.size == ranked_grid_size(2, 4, (64, 32))
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert rgb.shape[:2] == (ranked_grid_size(2, 4, (64, 32))[1], ranked_grid_size(2, 4, (64, 32))[0])
    green = ((rgb[..., 1] > 150) & (rgb[..., 0] < 80)).sum()
    red = ((rgb[..., 0] > 200) & (rgb[..., 1] < 80)).sum()
    assert green > 0 and red > 0  # both right and wrong matches are framed
    with pytest.raises(OSError, match="missing.jpg"):
        plot_ranked_lists([str(tmp_path / "missing.jpg")], [1], gallery_paths, gallery_pids, ranked[:1],
                          tmp_path / "bad.png")
