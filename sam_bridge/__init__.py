"""sam_bridge: clicks, boxes and "segment everything" to class-agnostic masks (Segment Anything).

Knows nothing about Osprey: it takes an image and prompts and returns boolean masks in the image's
own pixel coordinates. Submodules are imported lazily so ``import sam_bridge`` stays cheap.
"""
