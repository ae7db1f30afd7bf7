"""A compute-equivalent replica of the authors' released FLA-Net, for side-by-side timing.

The authors' code cannot be vendored here, so this module rebuilds the *same computation*
from the published description (see docs/model.md, "Differences from the authors' code"):
an smp UNet on Res2Net-50 (decoder widths 256-128-64-32-16) fed the current frame's
features, except at the stride-16 level where every clip's three 1024-channel maps go
through their FFA block (temporal shift, full complex ``fft2``, two SE blocks of
4096 -> 2048 -> 4096 with the constant normalisation, complex ``ifft2``, 3x3 conv
2048 -> 1024, ReLU, GroupNorm) in a Python loop over batch items, plus a heatmap head of
three transposed convs (1024 -> 256 -> 64 -> 1) added once before the segmentation head.
All three frames go through all encoder stages for every output frame.

It matches the published cost of their model (87.6 M parameters, 104 GFLOPs at 352):
``python benchmarks/authors_model_replica.py`` prints both.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _SEBlock(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, hidden, 1)
        self.up = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        g = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
        g = g / (g.mean(dim=-1, keepdim=True) + 1e-6)  # the released normalisation (constant)
        return x * torch.sigmoid(self.up(F.relu(self.down(g))))


class _AuthorsFFA(nn.Module):
    def __init__(self, c: int = 1024) -> None:
        super().__init__()
        self.se1 = _SEBlock(4 * c, 2 * c)
        self.se2 = _SEBlock(4 * c, 2 * c)
        self.reduce = nn.Conv2d(2 * c, c, 3, padding=1)
        self.norm = nn.GroupNorm(8, c)

    def forward(self, x: Tensor) -> Tensor:  # (1, 3C, h, w) for one clip
        _, c3, h, w = x.shape
        c = c3 // 3
        frames = x.view(1, 3, c, h, w)
        fold = c // 8
        shifted = torch.zeros_like(frames)
        shifted[:, :-1, :fold] = frames[:, 1:, :fold]
        shifted[:, 1:, fold : 2 * fold] = frames[:, :-1, fold : 2 * fold]
        shifted[:, :, 2 * fold :] = frames[:, :, 2 * fold :]
        y = torch.fft.fft2(shifted.view(1, c3, h, w).float())  # float32 under bf16 autocast (no bf16 FFT)
        i1, i2, i3 = torch.chunk(y.imag, 3, dim=1)
        r1, r2, r3 = torch.chunk(y.real, 3, dim=1)
        p1 = self.se1(torch.cat([i1, i2, r1, r2], dim=1))
        p2 = self.se2(torch.cat([i1, i3, r1, r3], dim=1))
        z1 = torch.fft.ifft2(torch.complex(*torch.chunk(p1, 2, dim=1)), s=(h, w)).real
        z2 = torch.fft.ifft2(torch.complex(*torch.chunk(p2, 2, dim=1)), s=(h, w)).real
        return self.norm(F.relu(self.reduce(z1 + z2)))


class AuthorsFLANetReplica(nn.Module):
    """Clip ``(B, 3, 3, H, W)`` -> mask logits ``(B, 1, H, W)`` with the authors' compute.

    Args:
        encoder: timm encoder; the released model's Res2Net-50 by default (another one, e.g.
            ``"resnet18"``, only makes a small stand-in for smoke tests of the benchmarks).
    """

    def __init__(self, encoder: str = "res2net50_26w_4s") -> None:
        super().__init__()
        self.unet = smp.Unet(f"tu-{encoder}", encoder_weights=None, classes=1)
        c = self.unet.encoder.out_channels[4]  # stride 16: 1024 on Res2Net-50
        self.ffa = _AuthorsFFA(c)
        self.heat = nn.ModuleList(
            [nn.ConvTranspose2d(c, 256, 3, 2, 1), nn.ConvTranspose2d(256, 64, 3, 2, 1), nn.ConvTranspose2d(64, 1, 3, 2, 1)]
        )

    def forward(self, clip: Tensor) -> Tensor:
        b, t = clip.shape[:2]
        feats = self.unet.encoder(clip.flatten(0, 1))  # all stages on all frames
        features = []
        for idx, f in enumerate(feats):
            f = f.view(b, t, *f.shape[1:])
            if idx == 4:  # stride 16: FFA per clip, in a Python loop as released
                fam = torch.stack([self.ffa(f[i].flatten(0, 1)[None])[0] for i in range(b)])
                features.append(f[:, 0] + fam)
            else:
                features.append(f[:, 0])
        h = fam
        for k, layer in enumerate(self.heat):
            h = layer(h, output_size=[fam.shape[-2] * 2 ** (k + 1), fam.shape[-1] * 2 ** (k + 1)])
        dec = self.unet.decoder(features)
        dec = dec + F.interpolate(h, size=dec.shape[-2:], mode="bilinear")
        return self.unet.segmentation_head(dec)


if __name__ == "__main__":
    from flanet.models.cost import count_gflops

    model = AuthorsFLANetReplica().eval()
    clip = torch.randn(1, 3, 3, 352, 352)
    with torch.inference_mode():
        out = model(clip)
        gflops = count_gflops(model, clip)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    ffa = sum(p.numel() for p in model.ffa.parameters()) / 1e6
    print(f"output {tuple(out.shape)}; params {params:.1f} M (FFA {ffa:.1f} M); {gflops:.1f} GFLOPs")
