"""flanet: FLA-Net for lesion segmentation in ultrasound and endoscopy videos."""

__version__ = "0.1.0"
