"""The video comparison methods of FLA-Net's Tables 2 and 4, reimplemented from their papers in plain PyTorch.

Each reads earlier frames through its per-video state (:mod:`flanet.models.state`): a fixed causal
window (PNSNet, DCFNet), an anchor frame and a window (PNS+), or a bounded memory of past frames and
the model's own predictions (STM, DPSTT: :mod:`flanet.models.memory`; AFB-URR: its feature bank).
One module per method; importing it registers its model (:mod:`flanet.models.registry`): ``stm``,
``afburr`` (AFB-URR), ``pnsplus`` (PNS+), ``dpstt``, ``dcfnet`` (Table 2), ``pnsnet`` (Table 4). The
computation of the Table 2 methods lives in their ``*_blocks`` modules, the attention reads they share
in :mod:`~flanet.models.video_methods.attention`.

>>> from flanet.models import create_model
>>> model = create_model("pnsplus", encoder="resnet18")
"""
