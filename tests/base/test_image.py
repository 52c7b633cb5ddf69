"""pfd.image: every PIL mode read as 8-bit RGB against a numpy reference conversion, and the cheap file checks."""
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pfd.image import MAX_PIXELS, ImageReadError, check_image_file, check_image_files, read_image, to_rgb

RNG = np.random.default_rng(0)
H, W = 12, 7


def rgb(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB" and image.size == (W, H)
    return np.asarray(image).astype(np.int64)


def grey3(values) -> np.ndarray:
    """Reference: grey [H, W] repeated into RGB."""
    return np.repeat(np.asarray(values, np.int64)[..., None], 3, axis=2)


SIXTEEN = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
SIXTEEN_REF = grey3(np.round(SIXTEEN / 257))  # 0..65535 -> 0..255


def test_sixteen_bit_png_reads_like_its_eight_bit_copy(tmp_path):
    """BAD 6: a 16-bit grey PNG read almost white (PIL clips at 255); it must read as its 8-bit copy."""
    eight = RNG.integers(0, 256, (H, W)).astype(np.uint8)
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # what a 16-bit export of it holds
    Image.fromarray(eight).save(tmp_path / "g8.png")
    with Image.open(tmp_path / "g16.png") as raw:
        assert raw.mode.startswith("I")  # really stored as 16 bits
    np.testing.assert_array_equal(rgb(read_image(tmp_path / "g16.png")), rgb(read_image(tmp_path / "g8.png")))
    assert abs(rgb(read_image(tmp_path / "g16.png")).mean() - eight.mean()) < 1e-9


@pytest.mark.parametrize("mode,dtype", [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2"), ("I;16N", "=u2")])
def test_sixteen_bit_modes(mode, dtype):
    image = Image.frombytes(mode, (W, H), SIXTEEN.astype(dtype).tobytes())
    np.testing.assert_array_equal(rgb(to_rgb(image)), SIXTEEN_REF)


def test_sixteen_bit_png_file(tmp_path):
    Image.fromarray(SIXTEEN).save(tmp_path / "a.png")
    np.testing.assert_array_equal(rgb(read_image(tmp_path / "a.png")), SIXTEEN_REF)


def test_thirty_two_bit_integer_read_as_sixteen_bit_samples(tmp_path):
    Image.fromarray(SIXTEEN.astype(np.int32), "I").save(tmp_path / "a.tif")
    with Image.open(tmp_path / "a.tif") as raw:
        assert raw.mode == "I"
    np.testing.assert_array_equal(rgb(read_image(tmp_path / "a.tif")), SIXTEEN_REF)
    too_big = SIXTEEN.astype(np.int32) * 4
    Image.fromarray(too_big, "I").save(tmp_path / "b.tif")
    with pytest.raises(ImageReadError, match=r"b.tif: 32-bit integer image with values \d+\.\.\d+"):
        read_image(tmp_path / "b.tif")


def test_float_image_in_zero_one(tmp_path):
    values = RNG.random((H, W)).astype(np.float32)
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(rgb(read_image(tmp_path / "f.tif")), grey3(np.rint(values * 255)))
    with pytest.raises(ImageReadError, match=r"float image with values 0\.\.200.*\[0, 1\]"):
        to_rgb(Image.fromarray(np.linspace(0, 200, H * W, dtype=np.float32).reshape(H, W), "F"))


def test_palette_modes():
    indices = RNG.integers(0, 4, (H, W)).astype(np.uint8)
    palette = np.array([[0, 0, 0], [250, 10, 20], [5, 200, 30], [40, 50, 240]], np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.reshape(-1).tolist())
    np.testing.assert_array_equal(rgb(to_rgb(image)), palette[indices])
    image.info["transparency"] = 1  # alpha dropped: the palette colours stay
    np.testing.assert_array_equal(rgb(to_rgb(image)), palette[indices])
    pa = image.convert("PA")
    np.testing.assert_array_equal(rgb(to_rgb(pa)), palette[indices])


def test_alpha_and_bilevel_modes():
    colour = RNG.integers(0, 256, (H, W, 4)).astype(np.uint8)
    np.testing.assert_array_equal(rgb(to_rgb(Image.fromarray(colour, "RGBA"))), colour[..., :3])
    grey_alpha = colour[..., :2]
    np.testing.assert_array_equal(rgb(to_rgb(Image.fromarray(grey_alpha, "LA"))), grey3(grey_alpha[..., 0]))
    opaque = colour.copy()
    opaque[..., 3] = 255  # premultiplied modes: exact where opaque
    np.testing.assert_array_equal(rgb(to_rgb(Image.fromarray(opaque, "RGBA").convert("RGBa"))), opaque[..., :3])
    np.testing.assert_array_equal(rgb(to_rgb(Image.fromarray(opaque[..., [0, 3]], "LA").convert("La"))),
                                  grey3(opaque[..., 0]))
    bits = RNG.integers(0, 2, (H, W)).astype(bool)
    np.testing.assert_array_equal(rgb(to_rgb(Image.fromarray(bits))), grey3(bits * 255))
    grey = colour[..., 0]
    np.testing.assert_array_equal(rgb(to_rgb(Image.fromarray(grey, "L"))), grey3(grey))


def test_cmyk_and_ycbcr():
    cmyk = RNG.integers(0, 256, (H, W, 4)).astype(np.float64)
    ref = np.rint((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255)  # naive CMYK -> RGB (no ICC profile)
    out = rgb(to_rgb(Image.fromarray(cmyk.astype(np.uint8), "CMYK")))
    assert np.abs(out - ref).max() <= 1
    ycc = RNG.integers(0, 256, (H, W, 3)).astype(np.float64)
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128, ycc[..., 2] - 128  # JPEG (JFIF) full-range YCbCr
    ref = np.clip(np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1), 0, 255)
    out = rgb(to_rgb(Image.fromarray(ycc.astype(np.uint8), "YCbCr")))
    assert np.abs(out - ref).max() <= 1.5


def test_size_limits_refused_before_decoding(monkeypatch, tmp_path):
    Image.new("L", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr("pfd.image.MAX_PIXELS", 1000)
    for call in (read_image, check_image_file):
        with pytest.raises(ImageReadError, match=r"big.png: image of 40x30 pixels is over pfd.image.MAX_PIXELS"):
            call(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="image of 0x0 pixels"):
        to_rgb(Image.new("RGB", (0, 0)))
    assert MAX_PIXELS >= 8000 * 8000


def test_decompression_bomb_is_one_error(tmp_path):
    """A header claiming more pixels than PIL's own limit: ImageReadError, no DecompressionBomb warning."""
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")  # 144 MP, a few kB on disk
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the test
        with pytest.raises(ImageReadError, match="bomb.png: image of 12000x12000 pixels"):
            read_image(tmp_path / "bomb.png")


def test_check_image_files_finds_truncated_and_empty_files(tmp_path):
    pixels = RNG.integers(0, 256, (64, 32, 3)).astype(np.uint8)
    paths = []
    for suffix in (".jpg", ".png"):
        path = tmp_path / f"good{suffix}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    check_image_files(paths)  # complete files pass
    for path in paths:
        cut = tmp_path / f"cut{path.suffix}"
        cut.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
        with Image.open(cut):
            pass  # the header alone reads fine
        with pytest.raises(ImageReadError, match=f"truncated image: {cut}"):
            check_image_files([*paths, cut])
    padded = tmp_path / "padded.jpg"  # some writers pad after the end marker: still complete
    padded.write_bytes(paths[0].read_bytes() + b"\0" * 100)
    check_image_file(padded)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match=f"not an image PIL can read: {empty}"):
        check_image_files([*paths, empty])


def test_uploads_to_the_search_service_are_read_like_files(tmp_path):
    """BAD 6 on the service's path: an uploaded 16-bit PNG decodes as its 8-bit copy (it read almost white)."""
    from pfd.serve.inputs import Limits, decode_upload

    eight = RNG.integers(0, 256, (H, W)).astype(np.uint8)
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    Image.fromarray(eight).save(tmp_path / "g8.png")
    upload = decode_upload((tmp_path / "g16.png").read_bytes(), "g16.png", Limits())
    np.testing.assert_array_equal(rgb(upload), rgb(read_image(tmp_path / "g8.png")))


def test_pfd_image_is_the_only_image_reader():
    """The rule behind BAD 6: every path that decodes an image file (datasets, API, search, service, pose,
    benchmarks, scripts) goes through pfd.image, so no module but it calls PIL's Image.open."""
    repo = Path(__file__).resolve().parents[2]
    sources = [*repo.glob("pfd/**/*.py"), *repo.glob("bench/**/*.py"), *repo.glob("*.py")]
    readers = [str(p.relative_to(repo)) for p in sources if "Image.open(" in p.read_text()]
    assert readers == ["pfd/image.py"]
