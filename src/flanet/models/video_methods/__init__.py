"""The video comparison methods of FLA-Net's Tables 2 and 4, reimplemented from their papers.

Each reads earlier frames through its per-video state (:mod:`flanet.models.state`): a fixed causal
window (PNSNet) or a bounded memory of past frames and the model's own predictions (STM,
:mod:`flanet.models.memory`). Importing a module registers its model (:mod:`flanet.models.registry`).
"""
