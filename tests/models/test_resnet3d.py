"""3D CNNs: SlowOnly-R50 (pytorchvideo ``slow_r50`` layout, ssvar's own code) and per-stage features of every 3D CNN."""

from __future__ import annotations

import pytest
import torch

from ssvar.models import R3D18, SlowOnlyR50, Tiny3D


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(0)
    return SlowOnlyR50()


def test_slow_r50_forward_backward(r50):
    assert r50.feature_dim == 2048 and r50.stage_dims == [256, 512, 1024, 2048]
    r50.train()
    x = torch.randn(2, 3, 4, 32, 32, requires_grad=True)
    f = r50(x)
    assert f.shape == (2, 2048)
    f.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in r50.parameters())
    r50.zero_grad(set_to_none=True)


def test_slow_r50_layout(r50):
    """Temporal kernel 1 in conv1/res2/res3, 3 in res4/res5 (first conv of each bottleneck); no temporal stride."""
    stem = r50.blocks[0].conv
    assert stem.kernel_size == (1, 7, 7) and stem.stride == (1, 2, 2)
    for stage, kt, n in zip(r50.blocks[1:], (1, 1, 3, 3), (3, 4, 6, 3)):
        assert len(stage.res_blocks) == n
        for block in stage.res_blocks:
            assert block.branch2.conv_a.kernel_size == (kt, 1, 1)
            assert block.branch2.conv_b.kernel_size == (1, 3, 3)
            assert block.branch2.conv_a.stride[0] == block.branch2.conv_b.stride[0] == 1


@pytest.mark.parametrize("name", ["tiny3d", "r3d18", "slow_r50"])
def test_forward_stages(name, r50):
    torch.manual_seed(0)
    net = {"tiny3d": lambda: Tiny3D(width=4), "r3d18": R3D18, "slow_r50": lambda: r50}[name]().eval()
    x = torch.randn(2, 3, 4, 32, 32)
    expected = {  # (C, T, H, W) after each stage
        "tiny3d": [(4, 4, 16, 16), (8, 4, 8, 8), (16, 2, 4, 4), (16, 1, 2, 2)],
        "r3d18": [(64, 4, 16, 16), (128, 2, 8, 8), (256, 1, 4, 4), (512, 1, 2, 2)],
        "slow_r50": [(256, 4, 8, 8), (512, 4, 4, 4), (1024, 4, 2, 2), (2048, 4, 1, 1)],
    }[name]
    with torch.no_grad():
        stages = net.forward_stages(x)
        assert [tuple(s.shape) for s in stages] == [(2, *e) for e in expected]
        assert [s.shape[1] for s in stages] == net.stage_dims and net.stage_dims[-1] == net.feature_dim
        # The pooled feature is the last stage's map averaged over time and space.
        torch.testing.assert_close(net(x), stages[-1].mean(dim=(2, 3, 4)))


def test_slow_r50_loads_pytorchvideo_layout(tmp_path, r50):
    """Against pytorchvideo itself, where it is installed (ssvar no longer depends on it)."""
    hub_module = pytest.importorskip("pytorchvideo.models.hub")
    slow_r50 = hub_module.slow_r50

    torch.manual_seed(1)
    hub = slow_r50(pretrained=False).eval()
    path = tmp_path / "slow_r50.pyth"
    torch.save({"model_state": hub.state_dict()}, path)  # pytorchvideo's released-file layout, head included
    r50.load_checkpoint(str(path))
    r50.eval()
    conv = lambda net: net.blocks[4].res_blocks[2].branch2.conv_c.weight  # noqa: E731
    torch.testing.assert_close(conv(r50), conv(hub))
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        h = x
        for block in hub.blocks[:5]:  # the hub model without its fixed-size pool + classifier
            h = block(h)
        torch.testing.assert_close(r50(x), h.mean(dim=(2, 3, 4)))


# ---------------------------------------------------------------- MMAction2's ResNet3d-18 (LTG)
def test_mmaction2_resnet3d18_layout():
    """Stem 3x7x7 stride 1x2x2 + max-pool 1x3x3 stride 1x2x2, BatchNorm eps 1e-3, temporal and
    spatial strides 1/2/2/2 and pool2: stages at 1/4 .. 1/32 of the input side, where
    torchvision's r3d_18 (no max-pool) runs at 1/2 .. 1/16."""
    from ssvar.models import ResNet3d18

    torch.manual_seed(0)
    net = ResNet3d18().eval()
    conv, bn = net.stem[0][0], net.stem[0][1]
    assert conv.kernel_size == (3, 7, 7) and conv.stride == (1, 2, 2) and conv.padding == (1, 3, 3)
    pool = net.stem[1]
    assert isinstance(pool, torch.nn.MaxPool3d) and pool.kernel_size == (1, 3, 3) and pool.stride == (1, 2, 2)
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)) and bn.eps == 1e-3
    assert net.stage_dims == [64, 128, 256, 512] and net.feature_dim == 512
    x = torch.randn(1, 3, 8, 112, 112)
    with torch.no_grad():
        ours = [tuple(f.shape[2:]) for f in net.forward_stages(x)]
        tv = [tuple(f.shape[2:]) for f in R3D18().eval().forward_stages(x)]
        assert net(x).shape == (1, 512)
    assert ours == [(4, 28, 28), (2, 14, 14), (1, 7, 7), (1, 4, 4)]
    assert [s[1] for s in tv] == [56, 28, 14, 7]
    # MMAction2 init (pretrained=None): Kaiming-normal fan-out convs, BatchNorm 1 / 0
    w = net.stages[0][0].conv1[0].weight
    assert abs(w.std().item() - (2 / (64 * 27)) ** 0.5) < 0.004
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in R3D18().parameters())


def test_tg_network_is_initialised_by_the_backbones_own_scheme():
    """The TG network copies the RGB backbone and redraws its weights with the backbone's own
    initialiser: R3D18 convs keep Kaiming fan-out std (~0.034 in layer1), not PyTorch's default
    reset (~0.014); SlowOnly-R50 keeps its zero-initialised last BatchNorm per bottleneck."""
    from ssvar.methods import TGFixMatch

    torch.manual_seed(0)
    m = TGFixMatch(R3D18(), num_classes=3, proj_dim=8)
    rgb = m.backbone.net.layer1[0].conv1[0].weight
    tg = m.tg_backbone.net.layer1[0].conv1[0].weight
    assert abs(tg.std().item() - rgb.std().item()) < 0.003 and not torch.equal(tg, rgb)
    m50 = TGFixMatch(SlowOnlyR50(width_multiplier=0.25), num_classes=3, proj_dim=8)
    final = [mod for mod in m50.tg_backbone.modules() if getattr(mod, "block_final_bn", False)]
    assert final and all(float(b.weight.abs().sum()) == 0 for b in final)


def test_slow_r50_matches_pytorchvideo_build_and_init():
    """ssvar's own SlowOnly-R50 is pytorchvideo's ``create_resnet`` network: same keys and shapes,
    same output for the same weights, same initialisation (zero-initialised last BatchNorms)."""
    resnet = pytest.importorskip("pytorchvideo.models.resnet")
    ref = resnet.create_resnet(
        input_channel=3, model_depth=50, stem_conv_kernel_size=(1, 7, 7), stem_dim_out=16, head=None
    ).eval()
    own = SlowOnlyR50(width_multiplier=0.25).eval()
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in own.state_dict().items()}
    for k, v in own.state_dict().items():
        if k.endswith("norm_c.weight"):
            assert v.abs().sum() == 0  # each residual block starts as the identity, as in pytorchvideo
    own.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(own(x), ref(x).mean(dim=(2, 3, 4)))


def test_slow_r50_starts_from_a_released_kinetics_file(tmp_path):
    """A file laid out as pytorchvideo's released ``SLOW_8x8_R50.pyth`` (``{"model_state": ...}``
    with the 400-class head ``blocks.5.proj``), random here, loads safely and strictly into any
    method's backbone through ``checkpoint=``; the head is dropped."""
    torch.manual_seed(3)
    src = SlowOnlyR50(width_multiplier=0.25)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in src.state_dict().items()}
    state["blocks.5.proj.weight"] = torch.randn(400, 512)
    state["blocks.5.proj.bias"] = torch.randn(400)
    path = tmp_path / "SLOW_8x8_R50.pyth"
    torch.save({"model_state": state, "epoch": 196, "cfg": "MODEL:\n  ARCH: slow\n"}, path)
    net = SlowOnlyR50(checkpoint=str(path), width_multiplier=0.25)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k])
    from ssvar.methods import Supervised

    model = Supervised(SlowOnlyR50(checkpoint=str(path), width_multiplier=0.25), num_classes=5)
    torch.testing.assert_close(
        model.backbone.blocks[1].res_blocks[0].branch2.conv_a.weight,
        state["blocks.1.res_blocks.0.branch2.conv_a.weight"],
    )
