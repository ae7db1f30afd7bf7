"""The video comparison methods of FLA-Net's Table 2, reimplemented from their papers in plain PyTorch.

One module per method, each registering its model with :func:`flanet.models.registry.register_model`
(options dataclass, paper, table row, its own loss): ``pnsplus`` (PNS+), ``afburr`` (AFB-URR),
``dpstt`` (DPSTT) and ``dcfnet`` (DCFNet); their computation lives in the ``*_blocks`` modules, the
attention reads they share in :mod:`~flanet.models.video_methods.attention`. Each streams through its
own per-video state (:meth:`~flanet.models.contract.VideoSegmentationModel.init_state`).

>>> from flanet.models import create_model
>>> model = create_model("pnsplus", encoder="resnet18")
"""
