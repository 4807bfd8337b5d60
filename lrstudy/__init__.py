"""lrstudy: a reproducible, tracked study of learning-rate strategies with Keras 3.

The package is imported by every notebook and by the command line, so this module stays
light: importing ``lrstudy`` does not import TensorFlow. Import the submodules you need
(``lrstudy.lr.schedules``, ``lrstudy.train`` ...).
"""

__version__ = "0.1.0"
