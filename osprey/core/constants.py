"""Constants shared by the model, the processor, training and evaluation (the only place they live)."""

from __future__ import annotations

# Placeholder id that marks image-token positions in input_ids (the original's IMAGE_TOKEN_INDEX).
# It is never looked up in the embedding table: the processor expands it to one id per image token
# and the model scatters the projected image features into those positions.
IMAGE_TOKEN_INDEX = -200
# Label value ignored by the loss.
IGNORE_INDEX = -100

# Region placeholders as added tokens of the released tokenizer (added_tokens.json).
MASK_TOKEN = "<mask>"
POS_TOKEN = "<pos>"
MASK_TOKEN_ID = 32000
POS_TOKEN_ID = 32001

# OpenAI-CLIP normalisation used by the released weights.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Osprey feeds 512x512 images to the ConvNeXt (open_clip's default for the tower is 320).
IMAGE_SIZE = 512
# The position token sees the region mask resized to MASK_SHAPE x MASK_SHAPE (the paper says 224;
# the released weights have 112 * 112 = 12544 inputs).
MASK_SHAPE = 112
# Context length the released models were trained with.
MODEL_MAX_LENGTH = 2048

# Default generation lengths: an answer in the app and the API (one owner for the number), and
# the paper's evaluation setting (max_new_tokens=1024 in the original's scripts).
DEFAULT_MAX_NEW_TOKENS = 512
PAPER_MAX_NEW_TOKENS = 1024

# Limits of one request, the same for the page, the HTTP API and the command lines.
MAX_POINTS_PER_PROMPT = 64  # clicks (and points) that make one mask
MAX_MASKS_PER_REQUEST = 50  # masks one request may send; also the regions of one image
MIN_IMAGE_SIDE = 8  # pixels: a smaller image has nothing for SAM or Osprey to see
