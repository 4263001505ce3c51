"""Label whole datasets: every region of every image gets a category, a caption, a description.

``python -m osprey.label IMAGES --out labels.json`` (see :mod:`osprey.label.cli`). The boxes:

* ``inputs.py``   IMAGES (a folder, a text file of paths, a COCO JSON) -> :class:`ImageItem` s;
* ``regions.py``  the regions of an image: SAM "everything", or an existing COCO file's masks;
* ``tasks.py``    what is asked per region (``category``, ``short``, ``detailed``) and where the
  answer goes in the output;
* ``job.py``      the per-image work, shared by both backends (image -> regions -> answers);
* ``shards.py``   results as JSON lines, one per finished image (resume, no duplicates);
* ``coco.py``     the shards -> one COCO JSON, written atomically;
* ``runner.py``   the driver: what is left to do, a backend, progress, the merge;
* ``ray_backend.py`` the same job on a Ray cluster (Ray Data, one actor per GPU).

This package composes SAM with Osprey (like the app's start-up, ``osprey/app/startup.py``); nothing
else imports it.
"""
