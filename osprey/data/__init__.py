"""Training data: one loader per published source (``osprey.data.sources``), the registry that
builds a stage's mixture from its dataset specs, the tokenising dataset and the collator.

Sources yield :class:`~osprey.data.sample.Sample` objects (image path, region masks, turns) and
never tokenise; :mod:`osprey.data.dataset` turns them into ids and labels through
``osprey.inference.prompt_format.encode``, the one owner of the prompt format.
"""
