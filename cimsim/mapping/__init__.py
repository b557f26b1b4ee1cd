"""torch models -> simulated layers. torch is imported here (and in ``cimsim.train``) only.

    sim = cimsim.mapping.deploy(model, chip, x_calibration)   # a SimModel (an nn.Module)
    y = sim(x); report = sim.report()

:func:`load_model` / :func:`load_data` read the command line's model and data files safely
(``torch.export`` archives, TorchScript, ``module:function``; ``.npz`` and tensor files);
:func:`modules_from_graph` turns an exported graph's linear and convolution calls into modules
that :func:`deploy` maps.
"""

from .deploy import SimModel, deploy
from .layers import SimLayer
from .loaders import LoadError, load_data, load_model, modules_from_graph

__all__ = [
    "LoadError",
    "SimLayer",
    "SimModel",
    "deploy",
    "load_data",
    "load_model",
    "modules_from_graph",
]
