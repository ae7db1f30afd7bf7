"""The image comparison methods of FLA-Net's Tables 2 and 4, reimplemented from their papers.

One module per method, each registering its model with :func:`flanet.models.registry.register_model`
(options dataclass, paper, table row, its own loss): ``resunetplusplus``, ``acsnet``, ``pranet``
(Table 4), ``transunet`` and ``setr`` (Table 2). Build them with :func:`flanet.models.create_model`:

>>> from flanet.models import create_model
>>> model = create_model("pranet", encoder="resnet18")
"""
