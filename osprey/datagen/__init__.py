"""Data generation in the Osprey-724K format (paper §3, ``python -m osprey.datagen``).

Modules, in pipeline order:

* ``sources``: read COCO-format instances, captions, referring expressions, image descriptions;
* ``context``: the text each LLM request carries; ``templates``: the method's prompts, verbatim;
* ``replies``: parse replies into record bodies, rejecting bad ones with a reason;
* ``objectlevel`` / ``partlevel`` / ``posneg``: the work items of each task;
* ``negatives``: MiniLM-similar and spatially nearest negative categories;
* ``runner``: resumable, concurrent execution and the summary;
* ``records``: the record layout and :func:`validate_record`, the contract with the loader.

Importing this package loads no model and opens no connection.
"""

from osprey.datagen.records import OUTPUT_FILES, TASKS, RecordError, validate_record

__all__ = ["OUTPUT_FILES", "TASKS", "RecordError", "validate_record"]
