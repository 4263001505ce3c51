"""Training: ``python -m osprey.train --config stage1|stage2|stage3|stage3_chat|finetune_lora``.

Nothing imports this package; it imports the model, checkpoint, data and conversation layers.
"""
