"""MODEL.PATCH_EMBED conv_stem: timm's ConvStem in place of the 16x16 patch conv, same token grid."""
import pytest
import torch
from test_model_pfd import CAMS, CLASSES, TINY, B, tiny_batch

from pfd.config import ConfigError, load_config
from pfd.model import build_loss, build_model


@pytest.mark.parametrize("stride", [[16, 16], [8, 16]])
def test_conv_stem_keeps_the_grid_and_trains(stride):
    opts = TINY + ["MODEL.STRIDE_SIZE", str(stride)]
    linear = build_model(load_config(None, opts), CLASSES, CAMS).base_vit
    torch.manual_seed(0)
    cfg = load_config(None, opts + ["MODEL.PATCH_EMBED", "conv_stem"])
    model = build_model(cfg, CLASSES, CAMS)
    stem = model.base_vit
    assert type(stem.vit.patch_embed.proj).__name__ == "ConvStem"
    assert stem.grid_size == linear.grid_size  # 8x4 at stride 16, 15x4 at [8, 16]
    images, heat, camids, pids = tiny_batch()
    tokens = stem(images, camids)  # [B, 1 + N, D]
    assert tokens.shape == (B, 1 + linear.num_patches, stem.embed_dim)

    model.train()
    loss = build_loss(cfg)(model(images, heat, camids), pids)["total"]
    loss.backward()
    first_conv = stem.vit.patch_embed.proj[0].conv.weight
    assert torch.isfinite(loss) and first_conv.grad is not None and first_conv.grad.abs().sum() > 0


@pytest.mark.parametrize("opts, named", [
    (["MODEL.STRIDE_SIZE", "[12, 12]"], "MODEL.STRIDE_SIZE"),
    (["INPUT.SIZE_TRAIN", "[124, 64]", "INPUT.SIZE_TEST", "[124, 64]"], "INPUT.SIZE_TRAIN"),
    (["MODEL.PRETRAIN_CHOICE", "imagenet", "MODEL.PRETRAIN_PATH", "vit.pth"], "MODEL.PRETRAIN_PATH"),
])
def test_conv_stem_refuses_what_it_cannot_do(opts, named):
    with pytest.raises(ConfigError, match=named) as err:
        load_config(None, TINY + ["MODEL.PATCH_EMBED", "conv_stem"] + opts)
    assert "conv_stem" in str(err.value)
