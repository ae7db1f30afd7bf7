"""A reference forward of the authors' released FLA-Net, for the exactness tests only.

Written from the description of their published code (jhl-Det/FLA-Net: smp 0.3.2 ``Unet`` with
``encoder_name="timm-res2net50_26w_4s"`` and their ``base/model_ours_v1.py``; see
../shared/notes/peers-and-baselines.md) and deliberately independent of
``flanet.models.authors``: the encoder runs timm's full Res2Net stage by stage as smp 0.3.2's
``Res2NetEncoder`` does, the decoder is smp 0.3.2's (nearest ``scale_factor=2`` upsampling,
conv-BN-ReLU twice per block) written out here, and the FAM loops over the batch items and
shifts channels on a ``(1, 3C, h, w)`` tensor as released. Its state dict has the release's key
names (``encoder.*``, ``decoder.blocks.*``, ``segmentation_head.0.*``, ``FAM_list.0.*``,
``heatmaphead_list.0.*``).
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Encoder(nn.Module):
    """smp 0.3.2's Res2NetEncoder: timm's ResNet/Res2Net without its classifier, six outputs."""

    def __init__(self, name: str) -> None:
        super().__init__()
        net = timm.create_model(name, pretrained=False, num_classes=0)
        for part in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, part, getattr(net, part))

    def forward(self, x: Tensor) -> list[Tensor]:
        out = [x]
        out.append(self.act1(self.bn1(self.conv1(x))))
        out.append(self.layer1(self.maxpool(out[-1])))
        for layer in (self.layer2, self.layer3, self.layer4):
            out.append(layer(out[-1]))
        return out


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class _Block(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(cin + skip, cout)
        self.conv2 = _conv_bn_relu(cout, cout)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class _Decoder(nn.Module):
    def __init__(self, encoder_channels: list[int], widths: tuple[int, ...] = (256, 128, 64, 32, 16)) -> None:
        super().__init__()
        chans = encoder_channels[1:][::-1]
        ins = [chans[0], *widths[:-1]]
        skips = [*chans[1:], 0]
        self.blocks = nn.ModuleList(_Block(i, s, o) for i, s, o in zip(ins, skips, widths))

    def forward(self, *features: Tensor) -> Tensor:
        feats = features[1:][::-1]
        x, skips = feats[0], feats[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return x


class _SE(nn.Module):
    def __init__(self, cin: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(cin, hidden, 1)
        self.up = nn.Conv2d(hidden, cin, 1)
        self.cin = cin

    def forward(self, inputs: Tensor) -> Tensor:
        g = torch.norm(inputs, p=2, dim=(2, 3), keepdim=True)
        x = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        x = torch.sigmoid(self.up(F.relu(self.down(x))))
        return inputs * x.view(-1, self.cin, 1, 1)


class _FAM(nn.Module):
    def __init__(self, in_channels: int) -> None:  # in_channels = 3C, as released
        super().__init__()
        c = in_channels // 3
        self.se_block1 = _SE(4 * c, 2 * c)
        self.se_block2 = _SE(4 * c, 2 * c)
        self.reduce = nn.Conv2d(2 * c, c, 3, 1, padding=1)
        self.norm = nn.GroupNorm(8, c)

    @staticmethod
    def shift(x: Tensor, n_segment: int = 3, fold_div: int = 8) -> Tensor:
        x = torch.stack(torch.chunk(x, 3, dim=1), dim=1)
        b, nt, c, h, w = x.size()
        x = x.view(b, nt // n_segment, n_segment, c, h, w)
        fold = c // fold_div
        out = torch.zeros_like(x)
        out[:, :, :-1, :fold] = x[:, :, 1:, :fold]
        out[:, :, 1:, fold:2 * fold] = x[:, :, :-1, fold:2 * fold]
        out[:, :, :, 2 * fold:] = x[:, :, :, 2 * fold:]
        return out.view(b, nt * c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        y = torch.fft.fft2(self.shift(x))
        i1, i2, i3 = torch.chunk(y.imag, 3, dim=1)
        r1, r2, r3 = torch.chunk(y.real, 3, dim=1)
        p1 = self.se_block1(torch.cat([i1, i2, r1, r2], dim=1))
        p2 = self.se_block2(torch.cat([i1, i3, r1, r3], dim=1))
        z1 = torch.fft.ifft2(torch.complex(*torch.chunk(p1, 2, dim=1)), s=(h, w)).real
        z2 = torch.fft.ifft2(torch.complex(*torch.chunk(p2, 2, dim=1)), s=(h, w)).real
        return self.norm(F.relu(self.reduce(z1 + z2)))


class _Heat(nn.Module):
    def __init__(self, cin: int, hidden: int = 256, out: int = 64) -> None:
        super().__init__()
        self.upsample1 = nn.ConvTranspose2d(cin, hidden, 3, stride=2, padding=1)
        self.upsample2 = nn.ConvTranspose2d(hidden, out, 3, stride=2, padding=1)
        self.upsample3 = nn.ConvTranspose2d(out, 1, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = self.upsample1(x, output_size=[h * 2, w * 2])
        x = self.upsample2(x, output_size=[h * 4, w * 4])
        return self.upsample3(x, output_size=[h * 8, w * 8])


class ReleasedReference(nn.Module):
    """``(B, 3, 3, H, W)`` clip ``[t, t-1, t-2]`` -> (mask logits, heatmap), as the release computes them."""

    def __init__(self, encoder: str = "res2net50_26w_4s") -> None:
        super().__init__()
        self.encoder = _Encoder(encoder)
        with torch.no_grad():
            channels = [f.shape[1] for f in self.encoder(torch.zeros(1, 3, 64, 64))]
        self.decoder = _Decoder(channels)
        self.segmentation_head = nn.Sequential(nn.Conv2d(16, 1, 3, padding=1))
        self.FAM_list = nn.ModuleList([_FAM(3 * channels[4])])
        self.heatmaphead_list = nn.ModuleList([_Heat(channels[4])])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, f = x.shape[:2]
        feats = self.encoder(x.flatten(0, 1))
        features, fam = [], None
        for idx, fea in enumerate(feats):
            fea = fea.view(b, f, *fea.shape[1:])
            if idx == 4:
                outs, fused = [], []
                for i in range(b):
                    tmp = self.FAM_list[0](torch.cat([fea[i][0][None], fea[i][1][None], fea[i][2][None]], dim=1))
                    outs.append(tmp)
                    fused.append(fea[i][0] + tmp.squeeze(0))
                features.append(torch.stack(fused))
                fam = torch.cat(outs)
            else:
                features.append(fea[:, 0])
        heat = self.heatmaphead_list[0](fam)
        dec = self.decoder(*features)
        heat = F.interpolate(heat, size=features[0].shape[-2:], mode="bilinear")
        return self.segmentation_head(dec + heat), heat


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, BatchNorm statistics and GroupNorm affine terms (deterministic), eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif tensor.ndim == 1:  # norm weights about 1, biases about 0
                centre = 1.0 if name.endswith(".weight") else 0.0
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1 + centre)
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (1.0 / fan_in) ** 0.5)
    return model.eval()
