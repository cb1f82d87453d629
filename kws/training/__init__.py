"""Training the shipped models (TensorFlow lives here and nowhere else).

- :mod:`~kws.training.recipes`: one named recipe per shipped model.
- :mod:`~kws.training.architectures`: the networks, one registry.
- :mod:`~kws.training.augment`: waveform and SpecAugment-style augmentation.
- :mod:`~kws.training.data`: clips to features, freshly augmented every epoch.
- :mod:`~kws.training.fitting`: Keras training, pruning and callbacks.
- :mod:`~kws.training.export`: TFLite conversion, int8, stripping, zlib, metadata.
- :mod:`~kws.training.pipeline`: one recipe end to end.
- :mod:`~kws.training.tf_reference`: ``tf.signal`` features, the reference the numpy ones match.
"""

import os

# tfmot needs Keras 2 (tf-keras); this must be set before TensorFlow is first imported,
# which every training module does through this package.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
