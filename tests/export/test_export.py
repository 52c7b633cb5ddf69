"""pfd.export: README's export command on the tiny demo model, the ViT baseline, and a failed check writing nothing."""
import re
import shlex

import numpy as np
import onnxruntime
import pytest
import torch

import pfd.export as pfd_export
from pfd.api import ReIDModel
from pfd.cli.export import main
from pfd.config import load_config
from pfd.engine.trainer import Trainer
from pfd.errors import OutputExistsError
from pfd.export import (
    INPUT_NAMES,
    ExportCheckError,
    example_inputs,
    export_onnx,
    is_pfd_onnx,
    matching_margins,
    onnx_features,
)
from pfd.model import build_model
from pfd.model.parts import pose_token_mask

from engine_tiny import demo_layout, make_data, readme_section, tiny_config

pytestmark = pytest.mark.slow  # ONNX export and onnxruntime runs, several seconds each


def relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


def sharpen_attention(weights):
    """Scale the decoder's attention projections by 8, as the reference fixture's weight recipe does. An
    untrained decoder attends almost uniformly, so its views nearly coincide and PVM's argmax becomes a
    near tie that float rounding decides (onnxruntime and PyTorch then pick different views)."""
    ckpt = torch.load(weights, weights_only=True)
    for key, value in ckpt["model"].items():
        if key.endswith("in_proj_weight"):
            value.mul_(8)
    torch.save(ckpt, weights)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data and an untrained checkpoint of the tiny demo model (2 blocks, camera embedding on)."""
    root = make_data(tmp_path_factory.mktemp("export"))
    Trainer(tiny_config(root, root / "run", "TEST.EVAL", "false")).save(0, improved=False)
    sharpen_attention(root / "run" / "last.pth")
    return {"root": root, "weights": root / "run" / "last.pth"}


def test_readme_export_command(setup, tmp_path, monkeypatch, capsys):
    lines = [line for line in readme_section("Export").splitlines() if line.startswith("python -m pfd.export")]
    assert len(lines) == 1, "README's Export section shows one `python -m pfd.export` command"
    argv = shlex.split(lines[0])[3:]
    demo_layout(setup, tmp_path)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    main(argv)
    out = capsys.readouterr().out
    reported = float(re.search(r"relative difference (\S+)", out).group(1))
    assert reported <= 1e-4

    onnx_file = tmp_path / argv[argv.index("--out") + 1]
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(INPUT_NAMES)
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch axis
    model = ReIDModel.from_checkpoint(setup["weights"], device="cpu")
    cfg = model.cfg
    # A batch size the export never saw; samples 0/1 have every keypoint visible / none, the rest mixed.
    inputs = example_inputs(7, cfg.INPUT.SIZE_TEST, cfg.INPUT.HEATMAP_SIGMA, model.num_cameras,
                            cfg.MODEL.SKT_THRES, seed=11)
    with torch.no_grad():
        expected = model.model(*inputs).numpy()  # [7, F]
    got = onnx_features(session, *inputs)
    assert got.shape == (7, model.feature_dim)
    assert relative_difference(got, expected) <= 1e-4


def test_vit_baseline_exports(tmp_path):
    cfg = load_config(None, ["MODEL.NAME", "vit_baseline", "MODEL.TRANSFORMER_TYPE", "vit_tiny_patch16_224",
                             "MODEL.VIT_DEPTH", "2", "INPUT.SIZE_TRAIN", "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]"])
    model = build_model(cfg, num_classes=10, num_cameras=4, load_pretrained=False)
    report = export_onnx(model, tmp_path / "baseline.onnx", cfg.INPUT.SIZE_TEST, cfg.INPUT.HEATMAP_SIGMA, 4)
    assert report["relative_difference"] <= 1e-4 and report["feature_dim"] == 192
    session = onnxruntime.InferenceSession(report["path"], providers=["CPUExecutionProvider"])
    inputs = example_inputs(4, cfg.INPUT.SIZE_TEST, cfg.INPUT.HEATMAP_SIGMA, 4, seed=5)  # heatmaps unused
    with torch.no_grad():
        assert relative_difference(onnx_features(session, *inputs), model(*inputs).numpy()) <= 1e-4


def test_the_pose_switches_export_with_their_zero_blocks_and_hidden_patches(tmp_path):
    """MODEL.PART_POOL pose and MODEL.TOKEN_MASK pose (square-shaped; test_readme_export_command exports the demo
    config's column) at the demo's overlapping stride (its token grid does not divide the heatmap): onnxruntime
    gives the zero blocks of hidden parts and sees the patches torch sees."""
    cfg = load_config(None, ["MODEL.PART_POOL", "pose", "MODEL.TOKEN_MASK", "pose", "MODEL.TOKEN_MASK_SHAPE", "square",
                             "MODEL.TRANSFORMER_TYPE",
                             "vit_tiny_patch16_224", "MODEL.VIT_DEPTH", "2", "MODEL.STRIDE_SIZE", "[8, 16]",
                             "MODEL.NUM_HEAD", "4", "MODEL.DECODER_FFN_DIM", "384", "INPUT.SIZE_TRAIN", "[128, 64]",
                             "INPUT.SIZE_TEST", "[128, 64]"])
    model = build_model(cfg, num_classes=10, num_cameras=4, load_pretrained=False).eval()
    report = export_onnx(model, tmp_path / "pose.onnx", cfg.INPUT.SIZE_TEST, cfg.INPUT.HEATMAP_SIGMA, 4)
    assert report["relative_difference"] <= 1e-4
    images, heatmaps, camids = example_inputs(4, cfg.INPUT.SIZE_TEST, cfg.INPUT.HEATMAP_SIGMA, 4, seed=6)
    heatmaps[0, :5] = 0  # a hidden head
    heatmaps[3, 1:] = 0  # one keypoint visible: most patches are masked
    visible = heatmaps.flatten(2).amax(-1) >= cfg.MODEL.SKT_THRES
    hidden = pose_token_mask(heatmaps, visible, model.base_vit.grid_size, cfg.MODEL.TOKEN_MASK_RADIUS,
                             cfg.MODEL.TOKEN_MASK_SHAPE)  # [4, N]
    assert hidden[3].sum() >= 30 and not hidden[1].any()
    session = onnxruntime.InferenceSession(report["path"], providers=["CPUExecutionProvider"])
    feats = onnx_features(session, images, heatmaps, camids)  # [4, F]
    with torch.no_grad():
        assert relative_difference(feats, model(images, heatmaps, camids).numpy()) <= 1e-4
    d = model.embed_dim
    assert np.abs(feats[0, d:6 * d]).max() == 0 and np.abs(feats[0, 6 * d:18 * d]).max() > 0  # head hidden only
    assert np.abs(feats[1, d:18 * d]).max() == 0  # sample 1 shows no keypoint


class Crop(torch.nn.Module):
    """A stand-in model with the export signature (exports in seconds)."""

    feature_dim = 8

    def forward(self, images, heatmaps, camids):
        return images.flatten(1)[:, :8] + heatmaps.flatten(1)[:, :1] + camids[:, None]


def test_failed_check_writes_nothing(tmp_path):
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportCheckError, match=r"model\.onnx: onnxruntime differs .* nothing was written"):
        export_onnx(Crop(), out, (16, 8), 1.0, 2, tolerance=-1.0)  # no export can pass a negative tolerance
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temp file


def test_out_is_new_or_an_onnx_file_pfd_exported(tmp_path):
    """`--out` silently replaced a user's file: now only a file whose metadata says pfd exported it."""
    import onnx

    out = tmp_path / "model.onnx"
    export_onnx(Crop(), out, (16, 8), 1.0, 2)
    assert is_pfd_onnx(out)
    first = out.read_bytes()
    export_onnx(Crop(), out, (16, 8), 1.0, 2)  # ours: replaced
    assert is_pfd_onnx(out) and out.read_bytes() == first
    proto = onnx.load(str(out))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "other.onnx"))  # an ONNX file from elsewhere
    (tmp_path / "notes.onnx").write_text("mine")
    for name in ("other.onnx", "notes.onnx"):
        before = (tmp_path / name).read_bytes()
        with pytest.raises(OutputExistsError, match=r"not a model file \(ONNX\) written by pfd"):
            export_onnx(Crop(), tmp_path / name, (16, 8), 1.0, 2)
        assert (tmp_path / name).read_bytes() == before


def tiny_pfd(**overrides):
    """An untrained 2-block PFD at 128x64 in eval mode (no checkpoint needed for the margin tests)."""
    opts = ["MODEL.TRANSFORMER_TYPE", "vit_tiny_patch16_224", "MODEL.VIT_DEPTH", "2", "MODEL.NUM_HEAD", "4",
            "MODEL.DECODER_FFN_DIM", "64", "INPUT.SIZE_TRAIN", "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]"]
    for key, value in overrides.items():
        opts += [key, value]
    torch.manual_seed(0)
    model = build_model(load_config(None, opts), num_classes=10, num_cameras=4, load_pretrained=False).eval()
    with torch.no_grad():  # sharpened attention, as in `sharpen_attention`: views that differ clearly
        for name, value in model.named_parameters():
            if name.endswith("in_proj_weight"):
                value.mul_(8)
    return model


def test_matching_margins_find_coinciding_views():
    model = tiny_pfd()
    inputs = example_inputs(3, (128, 64), 2.0, 4, seed=2)
    features, margins = matching_margins(model, inputs)
    with torch.no_grad():
        assert torch.equal(features, model(*inputs))  # the hooks change nothing
    assert margins.shape == (3,) and bool((margins > pfd_export.TIE_MARGIN).all())
    with torch.no_grad():
        model.query_embed[:] = model.query_embed[0]  # every view the same: every PVM argmax is an exact tie
    assert torch.equal(matching_margins(model, inputs)[1], torch.zeros(3))
    _, no_matching = matching_margins(tiny_pfd(**{"MODEL.FEAT_KIND": "global"}), inputs)
    assert bool(torch.isinf(no_matching).all())  # the global feature returns before any matching


@pytest.mark.parametrize("coinciding_views", [True, False])
def test_check_compares_only_matching_free_values_of_near_ties(coinciding_views, monkeypatch, tmp_path):
    """onnxruntime replaced by PyTorch with the decoder part of every feature changed, as another view picked
    at a near tie would change it: ignored for near-tie samples, caught for the others."""
    model = tiny_pfd()
    if coinciding_views:
        with torch.no_grad():
            model.query_embed[:] = model.query_embed[0]

    def flipped(session, *inputs):
        with torch.no_grad():
            features = model(*inputs)
        features[:, model.matching_free_dim:] += 1.0
        return features.numpy()

    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *args, **kwargs: None)
    monkeypatch.setattr(pfd_export, "onnx_features", flipped)
    difference, ties, samples = pfd_export._compare(model, tmp_path / "unused.onnx", (128, 64), 2.0, 4)
    assert samples == sum(pfd_export.CHECK_BATCHES)
    if coinciding_views:
        assert ties == samples and difference == 0.0
    else:
        assert ties == 0 and difference > 0.01
