"""Model constants that the command line needs without importing torch or timm."""

#: The paper's encoder (Section 4): Res2Net-50 as timm names it.
DEFAULT_ENCODER = "res2net50_26w_4s"
#: ``encoder_weights`` value for timm's pretrained ImageNet weights of the encoder.
IMAGENET = "imagenet"
