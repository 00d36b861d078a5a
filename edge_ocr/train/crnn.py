"""The meter model's network (torch): a CRNN made for INT8 on CPUs without INT8 dot products too.

- Six 3x3 convolutions with BatchNorm (folded into the convolution at export) and ReLU: onnxruntime
  fuses each into one QLinearConv with its activation, so the quantized graph has no float islands
  between convolutions. Channel counts are multiples of 16/32, what the INT8 and FP32 kernels tile by.
- Height 32 -> 1 by pooling and a last (2, 1) convolution; width / 4 time steps (an 8-digit crop at
  aspect 4.5 gives 36 steps, room for CTC's blanks between repeated digits).
- A one-layer BiLSTM (64 a direction) for context along the line, then a linear layer and softmax.

About 0.35 M parameters (1.4 MB FP32) and 90 MFLOP for a 144-px-wide crop: a twentieth of the general
recognizer's cost for a 320-px line.
"""

from __future__ import annotations

import torch
from torch import nn

CHARSET = "0123456789.-"  # + the space, last (as the runtime's charset_from_metadata expects)
CLASSES = len(CHARSET) + 2  # blank, the symbols, the space


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class MeterCRNN(nn.Module):
    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(1, 32), nn.MaxPool2d(2, 2),  # 16 x W/2
            *_block(32, 64), nn.MaxPool2d(2, 2),  # 8 x W/4
            *_block(64, 96), *_block(96, 96), nn.MaxPool2d((2, 1), (2, 1)),  # 4 x W/4
            *_block(96, 96), nn.MaxPool2d((2, 1), (2, 1)),  # 2 x W/4
            nn.Conv2d(96, 96, (2, 1), bias=False), nn.BatchNorm2d(96), nn.ReLU(inplace=True),  # 1 x W/4
        )  # fmt: skip
        self.rnn = nn.LSTM(96, hidden, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 32, W) -> logits (N, W/4, CLASSES)."""
        f = self.features(x).squeeze(2).permute(0, 2, 1)  # N, T, C
        y, _ = self.rnn(f)
        return self.head(y)


class WithSoftmax(nn.Module):
    """What is exported: probabilities, as the runtime's CTC decoder takes them."""

    def __init__(self, net: MeterCRNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)
