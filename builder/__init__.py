"""webml: build, test and serve browser apps for Keras models with TensorFlow.js."""

import os

__version__ = "0.1.0"

# tensorflow_decision_forests (imported by the TF.js converter) prints a banner on import, and
# when stdout is not a terminal it takes the process for a notebook and imports IPython, which
# fails where IPython is not installed (for example under pytest's output capture).
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
