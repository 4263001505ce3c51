"""From a name to answers: hub downloads, loading and quantisation, the hardware fit, image and
mask preprocessing, image features, the prompt format, generation (prefix cache, shared-prefix
batches, static decoding), the continuous-batching engine, top-k scoring with the vocabularies,
and the ``Osprey`` facade. May import ``osprey.core`` and ``osprey.model``."""
