"""Experiments that train and evaluate: ``flanet compare`` and the paper's ablation (Table 3).

Above :mod:`flanet.training` and :mod:`flanet.evaluation`, which are siblings and import neither this
package nor each other.
"""
