"""LSNet in plain PyTorch, module for module the upstream ``model/lsnet.py`` (THU-MIG/lsnet).

Module and parameter names are frozen: official checkpoints load into these classes strictly.
No timm, torchvision or triton: the few layers upstream borrowed are written here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from .ska import SKA


class Conv2d_BN(nn.Sequential):  # noqa: N801 - upstream name, part of the checkpoint layout
    """Conv2d without bias followed by BatchNorm2d; ``fuse()`` folds them into one Conv2d."""

    def __init__(self, a, b, ks=1, stride=1, pad=0, dilation=1, groups=1, bn_weight_init=1.0):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, dilation, groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        c, bn = self.c, self.bn
        scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
        m = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, stride=c.stride, padding=c.padding,
                      dilation=c.dilation, groups=c.groups, device=c.weight.device, dtype=c.weight.dtype)
        m.weight.copy_(c.weight * scale[:, None, None, None])
        m.bias.copy_(bn.bias - bn.running_mean * scale)
        return m


class BN_Linear(nn.Sequential):  # noqa: N801 - upstream name
    """BatchNorm1d followed by Linear; ``fuse()`` folds them into one Linear."""

    def __init__(self, a, b, bias=True, std=0.02):
        super().__init__()
        self.add_module("bn", nn.BatchNorm1d(a))
        self.add_module("l", nn.Linear(a, b, bias=bias))
        nn.init.trunc_normal_(self.l.weight, std=std)
        if bias:
            nn.init.constant_(self.l.bias, 0)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        bn, lin = self.bn, self.l
        scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
        shift = bn.bias - bn.running_mean * scale
        m = nn.Linear(lin.in_features, lin.out_features, device=lin.weight.device, dtype=lin.weight.dtype)
        m.weight.copy_(lin.weight * scale[None, :])
        bias = lin.weight @ shift
        m.bias.copy_(bias if lin.bias is None else bias + lin.bias)
        return m


class Residual(nn.Module):
    """``x + m(x)`` with stochastic depth while training."""

    def __init__(self, m, drop=0.0):
        super().__init__()
        self.m = m
        self.drop = drop

    def forward(self, x):
        if self.training and self.drop > 0:
            keep = torch.rand(x.size(0), 1, 1, 1, device=x.device).ge_(self.drop).div(1 - self.drop)
            return x + self.m(x) * keep.detach()
        return x + self.m(x)


class FFN(nn.Module):
    def __init__(self, ed, h):
        super().__init__()
        self.pw1 = Conv2d_BN(ed, h)
        self.act = nn.ReLU()
        self.pw2 = Conv2d_BN(h, ed, bn_weight_init=0)

    def forward(self, x):
        return self.pw2(self.act(self.pw1(x)))


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``divisor``), as timm's SE does."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """timm's ``SqueezeExcite(channels, 0.25)``: mean -> 1x1 -> ReLU -> 1x1 -> sigmoid gate."""

    def __init__(self, channels, rd_ratio=0.25):
        super().__init__()
        rd = make_divisible(channels * rd_ratio)
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=True)
        self.bn = nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        s = self.fc2(self.act(self.bn(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * self.gate(s)


def attention_bias_index(resolution: int) -> tuple[torch.Tensor, int]:
    """LeViT relative-position index: (N, N) offsets table index and the number of offsets."""
    points = list(itertools.product(range(resolution), range(resolution)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(off, len(offsets)))
    n = len(points)
    return torch.LongTensor(idxs).view(n, n), len(offsets)


class Attention(nn.Module):
    """Multi-head self-attention with a depthwise 3x3 on queries and LeViT attention biases."""

    def __init__(self, dim, key_dim, num_heads=8, attn_ratio=4, resolution=14):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.nh_kd = nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = int(attn_ratio * key_dim) * num_heads
        self.attn_ratio = attn_ratio
        self.qkv = Conv2d_BN(dim, self.dh + nh_kd * 2, ks=1)
        self.proj = nn.Sequential(nn.ReLU(), Conv2d_BN(self.dh, dim, bn_weight_init=0))
        self.dw = Conv2d_BN(nh_kd, nh_kd, 3, 1, 1, groups=nh_kd)
        idxs, n_offsets = attention_bias_index(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, n_offsets))
        self.register_buffer("attention_bias_idxs", idxs)

    def _bias(self) -> torch.Tensor:
        """The (heads, N, N) bias table; gathered once and cached in eval until the biases change."""
        if self.training or torch.compiler.is_compiling():  # torch.export traces fake tensors: no data pointer
            return self.attention_biases[:, self.attention_bias_idxs]
        p = self.attention_biases
        key = (p._version, p.data_ptr(), p.dtype, p.device)
        if getattr(self, "_ab_key", None) != key:
            with torch.no_grad():
                self.ab = p[:, self.attention_bias_idxs]
            self._ab_key = key
        return self.ab

    def forward(self, x):
        b, _, h, w = x.shape
        n = h * w
        q, k, v = self.qkv(x).view(b, -1, h, w).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q)
        q, k, v = (t.reshape(b, self.num_heads, -1, n) for t in (q, k, v))
        attn = ((q.transpose(-2, -1) @ k) * self.scale + self._bias()).softmax(dim=-1)
        return self.proj((v @ attn.transpose(-2, -1)).reshape(b, -1, h, w))


class RepVGGDW(nn.Module):
    """Depthwise 3x3 + depthwise 1x1 + identity; ``fuse()`` folds all three into one 3x3."""

    def __init__(self, ed):
        super().__init__()
        self.conv = Conv2d_BN(ed, ed, 3, 1, 1, groups=ed)
        self.conv1 = Conv2d_BN(ed, ed, 1, 1, 0, groups=ed)
        self.dim = ed

    def forward(self, x):
        return self.conv(x) + self.conv1(x) + x

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv, conv1 = self.conv.fuse(), self.conv1.fuse()
        w1 = nn.functional.pad(conv1.weight, [1, 1, 1, 1])
        identity = nn.functional.pad(torch.ones_like(conv1.weight), [1, 1, 1, 1])
        conv.weight.copy_(conv.weight + w1 + identity)
        conv.bias.copy_(conv.bias + conv1.bias)
        return conv


class LKP(nn.Module):
    """Large-kernel perception: 1x1 -> DW KxK -> 1x1 -> 1x1 to per-pixel SKA kernels, GroupNorm."""

    def __init__(self, dim, lks, sks, groups):
        super().__init__()
        self.cv1 = Conv2d_BN(dim, dim // 2)
        self.act = nn.ReLU()
        self.cv2 = Conv2d_BN(dim // 2, dim // 2, ks=lks, pad=(lks - 1) // 2, groups=dim // 2)
        self.cv3 = Conv2d_BN(dim // 2, dim // 2)
        self.cv4 = nn.Conv2d(dim // 2, sks**2 * dim // groups, kernel_size=1)
        self.norm = nn.GroupNorm(num_groups=dim // groups, num_channels=sks**2 * dim // groups)
        self.sks = sks
        self.groups = groups
        self.dim = dim

    def forward(self, x):
        x = self.act(self.cv3(self.cv2(self.act(self.cv1(x)))))
        w = self.norm(self.cv4(x))
        b, _, h, width = w.size()
        return w.view(b, self.dim // self.groups, self.sks**2, h, width)


class LSConv(nn.Module):
    """LS convolution: ``BN(SKA(x, LKP(x))) + x``."""

    def __init__(self, dim):
        super().__init__()
        self.lkp = LKP(dim, lks=7, sks=3, groups=8)
        self.ska = SKA()
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x):
        return self.bn(self.ska(x, self.lkp(x))) + x


class Block(nn.Module):
    """Even depth: RepVGGDW + SE; odd depth: LSConv, or attention in the last stage. Then FFN."""

    def __init__(self, ed, kd, nh=8, ar=4, resolution=14, stage=-1, depth=-1):
        super().__init__()
        if depth % 2 == 0:
            self.mixer = RepVGGDW(ed)
            self.se = SqueezeExcite(ed, 0.25)
        else:
            self.se = nn.Identity()
            if stage == 3:
                self.mixer = Residual(Attention(ed, kd, nh, ar, resolution=resolution))
            else:
                self.mixer = LSConv(ed)
        self.ffn = Residual(FFN(ed, int(ed * 2)))

    def forward(self, x):
        return self.ffn(self.se(self.mixer(x)))


class LSNet(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000,
                 embed_dim=(64, 128, 192, 256), key_dim=(16, 16, 16, 16), depth=(1, 2, 3, 4),
                 num_heads=(4, 4, 4, 4), distillation=False):
        super().__init__()
        e0 = embed_dim[0]
        self.patch_embed = nn.Sequential(
            Conv2d_BN(in_chans, e0 // 4, 3, 2, 1), nn.ReLU(),
            Conv2d_BN(e0 // 4, e0 // 2, 3, 2, 1), nn.ReLU(),
            Conv2d_BN(e0 // 2, e0, 3, 2, 1))
        resolution = img_size // patch_size
        attn_ratio = [embed_dim[i] / (key_dim[i] * num_heads[i]) for i in range(len(embed_dim))]
        self.blocks1, self.blocks2, self.blocks3, self.blocks4 = (nn.Sequential() for _ in range(4))
        stages = [self.blocks1, self.blocks2, self.blocks3, self.blocks4]
        for i, (ed, kd, dpth, nh, ar) in enumerate(zip(embed_dim, key_dim, depth, num_heads, attn_ratio)):
            for d in range(dpth):
                stages[i].append(Block(ed, kd, nh, ar, resolution, stage=i, depth=d))
            if i != len(depth) - 1:
                stages[i + 1].append(Conv2d_BN(ed, ed, ks=3, stride=2, pad=1, groups=ed))
                stages[i + 1].append(Conv2d_BN(ed, embed_dim[i + 1], ks=1, stride=1, pad=0))
                resolution = (resolution - 1) // 2 + 1
        self.head = BN_Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.distillation = distillation
        if distillation:
            self.head_dist = BN_Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.num_classes = num_classes
        self.num_features = embed_dim[-1]
        self.img_size = img_size

    def forward_features(self, x):
        x = self.blocks4(self.blocks3(self.blocks2(self.blocks1(self.patch_embed(x)))))
        return nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, x):
        x = self.forward_features(x)
        if not self.distillation:
            return self.head(x)
        x, x_dist = self.head(x), self.head_dist(x)
        return (x + x_dist) / 2 if not self.training else (x, x_dist)


@dataclass(frozen=True)
class VariantSpec:
    """Architecture hyper-parameters of one LSNet variant (upstream's factory arguments)."""

    embed_dim: tuple[int, ...]
    depth: tuple[int, ...]
    num_heads: tuple[int, ...]
    distillation: bool = False
    patch_size: int = 8
    key_dim: tuple[int, ...] = (16, 16, 16, 16)
    paper_gflops: float = 0.0


_BASE = {
    "lsnet_t": VariantSpec((64, 128, 256, 384), (0, 2, 8, 10), (3, 3, 3, 4), paper_gflops=0.3),
    "lsnet_s": VariantSpec((96, 192, 320, 448), (1, 2, 8, 10), (3, 3, 3, 4), paper_gflops=0.5),
    "lsnet_b": VariantSpec((128, 256, 384, 512), (4, 6, 8, 10), (3, 3, 3, 4), paper_gflops=1.3),
}
VARIANTS: dict[str, VariantSpec] = {
    **_BASE,
    **{f"{k}_distill": VariantSpec(v.embed_dim, v.depth, v.num_heads, True, paper_gflops=v.paper_gflops)
       for k, v in _BASE.items()},
}


def variant_name(stem_width: int, distillation: bool) -> str | None:
    """The variant whose stem is ``stem_width`` channels wide, with or without a distillation head."""
    return next((name for name, spec in VARIANTS.items()
                 if spec.embed_dim[0] == stem_width and spec.distillation == distillation), None)


def build_model(variant: str, num_classes: int = 1000, img_size: int = 224) -> LSNet:
    """A freshly initialised LSNet ``variant`` (one of :data:`VARIANTS`) in eval mode."""
    from lsnet_deploy.core.errors import UsageError

    spec = VARIANTS.get(variant)
    if spec is None:
        raise UsageError(f"unknown model {variant!r}; choose one of: {', '.join(VARIANTS)}")
    if num_classes < 1:
        raise UsageError(f"num_classes must be >= 1, got {num_classes}")
    if img_size < 32 or img_size % 32:
        raise UsageError(f"image size must be a positive multiple of 32, got {img_size}")
    model = LSNet(img_size=img_size, patch_size=spec.patch_size, num_classes=num_classes,
                  embed_dim=list(spec.embed_dim), key_dim=list(spec.key_dim), depth=list(spec.depth),
                  num_heads=list(spec.num_heads), distillation=spec.distillation)
    return model.eval()


def fuse_model(model: nn.Module) -> nn.Module:
    """Replace, in place, every child that has ``fuse()`` by its fused plain module; returns ``model``."""
    for name, child in model.named_children():
        if hasattr(child, "fuse"):
            setattr(model, name, child.fuse())
        else:
            fuse_model(child)
    return model


def attention_resolution(img_size: int, patch_size: int = 8, stages: int = 4) -> int:
    """Side of the last stage's feature map (its attention-bias tables hold ``side**2`` offsets)."""
    resolution = img_size // patch_size
    for _ in range(stages - 1):
        resolution = (resolution - 1) // 2 + 1
    return resolution
