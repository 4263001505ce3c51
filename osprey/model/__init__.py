"""The boxes of the paper's figure, one file each: vision tower, projector, mask extractor, LLM,
and the Osprey model that composes them."""
