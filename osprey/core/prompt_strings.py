"""Every prompt string the released Osprey weights saw, in one place.

These strings are part of the interface with the weights: they are copied character for character
from the original implementation, typos included ("Ther are", "attibuts", "ablout", "represtented",
the missing space in "you see" + "in the image"). Golden tests freeze them; do not "fix" them.

Placeholders: ``<image>`` (the 1024 image tokens), ``<mask><pos>`` (one region: its mask token and
its position token, always adjacent), ``<region>`` (a region reference inside a template, replaced
by ``<mask><pos>`` or by a ``regionK<mask><pos>`` list when rendered).
"""

from __future__ import annotations

IMAGE = "<image>"
MASK = "<mask>"
POS = "<pos>"
REGION = MASK + POS
REGION_REF = "<region>"

# ---------------------------------------------------------------------------------------------
# Conversation templates (system sentence, roles and separators of the Vicuna-v1 style)

SYSTEM_OSPREY_V1 = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
# Training ran with `--version v1`, i.e. vicuna_v1, whose system sentence says "user".
SYSTEM_VICUNA_V1 = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# ---------------------------------------------------------------------------------------------
# First-turn prefixes ("begin strings")

OVERVIEW = "This provides an overview of the picture.\n"
# LVIS/PACO evaluation, VG, Osprey-724K training.
BEGIN = IMAGE + "\n" + OVERVIEW
# The original demo bypasses the normaliser and keeps an empty line after <image>.
BEGIN_DEMO = IMAGE + "\n\n" + OVERVIEW
# Open-vocabulary segmentation, RefCOCOg, GPT-4 description, Ferret-Bench and VCR: the source
# string is "<image>.\n...", and the normaliser moves <image> to the front, leaving a "." line.
BEGIN_DOT = IMAGE + "\n.\n" + OVERVIEW

# ---------------------------------------------------------------------------------------------
# Inference tasks (first human message = prefix + question)

QUESTION_CATEGORY = "What is the category of <mask><pos>? Using only one word or phrase."
QUESTION_SHORT = "Please give me a short description of <mask><pos>. Using a short phrase."
QUESTION_DETAILED = "Can you give me a detailed description of <mask><pos>?"
QUESTION_OPEN_VOCAB = "What is in <mask><pos>? Using a short phrase."
QUESTION_REFCOCOG = "Please give me a short description of <mask><pos>."

# task name -> (prefix, question); the app's one-click buttons and the CLI's --task use these.
TASKS: dict[str, tuple[str, str]] = {
    "category": (BEGIN, QUESTION_CATEGORY),
    "short": (BEGIN_DEMO, QUESTION_SHORT),
    "detailed": (BEGIN_DEMO, QUESTION_DETAILED),
    "open-vocab": (BEGIN_DOT, QUESTION_OPEN_VOCAB),
    "refcocog": (BEGIN_DOT, QUESTION_REFCOCOG),
}

# ---------------------------------------------------------------------------------------------
# Multi-region format of Osprey-724K (conversation, short-form, part-level): first turn only.


def regions_sentence(n: int) -> str:
    """``Ther are N part regions in the picture: region1<mask><pos>,...,regionN<mask><pos>. ``"""
    listing = ",".join(f"region{i + 1}{REGION}" for i in range(n))
    if n == 1:
        return "Ther are 1 part region in the picture: " + listing + ". "
    return f"Ther are {n} part regions in the picture: " + listing + ". "


# Appended to every question of the short-form and part-level files.
LIMIT_SINGLE_WORD = " Answer the question using a single word or phrase."
# Appended to every Visual Genome question.
LIMIT_SHORT_PHRASE = " Answer the question using a short phrase."

# ---------------------------------------------------------------------------------------------
# Stage-2 instructions (first human turn = instruction + "<mask><pos>", one region per turn)

BEGIN_COCO = (
    "<image>\nIn the conversation below, you simply answer the category name based on what you see "
    "in the imagery inside a particular region. I will give you only one region each time.\n"
)

PART_IMAGENET_CLASSES = (
    "Bottle", "Biped", "Quadruped", "Fish", "Reptile", "Bicycle", "Bird", "Car", "Boat", "Snake",
    "Aeroplane",
)  # fmt: skip
PART_IMAGENET_PARTS = (
    "Tier", "Hand", "Wing", "Mouth", "Tail", "Side", "Fin", "Engine", "Foot", "Head", "Body", "Sail",
    "Seat",
)  # fmt: skip
PASCAL_PART_CLASSES = (
    "potted plant", "aeroplane", "cow", "cat", "bus", "horse", "car", "dog", "bicycle", "person",
    "bird", "bottle", "sheep", "motorbike",
)  # fmt: skip
PASCAL_PART_PARTS = (
    "eye", "window", "cap", "headlight", "hand", "mirror", "arm", "plant", "wheel", "ear", "pot",
    "foot", "leg", "nose", "body", "horn", "handlebar", "neck", "license plate", "paw", "saddle",
    "head", "muzzle", "tail", "wing", "beak", "hair", "torso", "door", "mouth",
)  # fmt: skip

_PART_INSTRUCTION = (
    "In the conversation below, you simply answer the category and subcategory name based on what "
    "you see"  # sic: no space before "in the image"
    "in the image inside a particular region. It maybe a subpart of an object. "
    "I will give you only one region each time. Your answer should in the format of "
)
BEGIN_PART_IMAGENET = (
    "<image>\n" + _PART_INSTRUCTION + "category subcategory. "
    "Categories Containing " + ", ".join(PART_IMAGENET_CLASSES) + ". "
    "Subcategories Containing " + ",".join(PART_IMAGENET_PARTS) + ".\n"
)
BEGIN_PASCAL_PART = (
    "<image>\n " + _PART_INSTRUCTION + "category:subcategory. "  # sic: space after the newline
    "Categories Containing " + ", ".join(PASCAL_PART_CLASSES) + ". "
    "Subcategories Containing " + ",".join(PASCAL_PART_PARTS) + ".\n"
)
BEGIN_REFCOCO = (
    "<image>\nI will provide you with only one region containing only one object, although there "
    "may be other objects present in the image. It is recommended that you describe the object's "
    "relative position with respect to other objects in the image, as well as its position within "
    "the image and its basic attributes."
)
BEGIN_REFCOCO_PLUS = (
    "<image>\nI will provide you with only one region containing only one object, although there "
    "may be other objects present in the image. It is recommended that you describe the object's "
    "relative position with respect to other objects in the image and its basic attibuts, you "
    "should not give its position within the image."
)

# ---------------------------------------------------------------------------------------------
# Question pools sampled during training

DETAILED_QUESTIONS = (
    "Can you provide me with a detailed description of the region in the picture marked by <region>?",
    "I'm curious about the region represented by <region> in the picture. Could you describe it in detail?",
    "What can you tell me about the region indicated by <region> in the image?",
    "I'd like to know more about the area in the photo labeled <region>. Can you give me a detailed description?",
    "Could you describe the region shown as <region> in the picture in great detail?",
    "What details can you give me about the region outlined by <region> in the photo?",
    "Please provide me with a comprehensive description of the region marked with <region> in the image.",
    "Can you give me a detailed account of the region labeled as <region> in the picture?",
    "I'm interested in learning more about the region represented by <region> in the photo. Can you describe it in detail?",
    "What is the region outlined by <region> in the picture like? Could you give me a detailed description?",
    "Can you provide me with a detailed description of the region in the picture marked by <region>, please?",
    "I'm curious about the region represented by <region> in the picture. Could you describe it in detail, please?",
    "What can you tell me about the region indicated by <region> in the image, exactly?",
    "I'd like to know more about the area in the photo labeled <region>, please. Can you give me a detailed description?",
    "Could you describe the region shown as <region> in the picture in great detail, please?",
    "What details can you give me about the region outlined by <region> in the photo, please?",
    "Please provide me with a comprehensive description of the region marked with <region> in the image, please.",
    "Can you give me a detailed account of the region labeled as <region> in the picture, please?",
    "I'm interested in learning more about the region represented by <region> in the photo. Can you describe it in detail, please?",
    "What is the region outlined by <region> in the picture like, please? Could you give me a detailed description?",
    "Please describe the region <region> in the image in detail.",
    "Can you offer a thorough analysis of the region <region> in the image?",
    "Could you elaborate on the region highlighted by <region> in the picture provided?",
    "Please share more information about the zone emphasized with <region> in the photo.",
    "What insights can you give ablout the area denoted by <region> in the image presented?",
    "Can you share a comprehensive rundown of the region denoted by <region> in the presented image?",
    "I'd like to know more about the region highlighted by <region> in the picture provided.",
    "Work through the important details of the area <region> in the image.",
    "Illustrate the area represtented by <region> through a descriptive explanation.",
    "Examine the region <region> closely and share its details.",
)

SHORT_QUESTIONS = (  # Visual Genome region captions
    "Give me a short description of <region>.",
    "Can you give me a short description of <region>?",
    "Can you provide me with a short description of the region in the picture marked by <region>?",
    "I'm curious about the region represented by <region> in the picture. Could you describe it in few words?",
    "What can you tell me about the region indicated by <region> in the image in few words?",
    "I'd like to know more about the area in the photo labeled <region>. Can you give me a concise description?",
    "Could you describe the region shown as <region> in the picture concisely?",
    "What can you give me about the region outlined by <region> in the photo?",
    "Please provide me with a brief description of the region marked with <region> in the image.",
    "Can you give me a brief introduction of the region labeled as <region> in the picture?",
    "I'm interested in knowing the region represented by <region> in the photo. Can you describe it in several words?",
    "What is the region outlined by <region> in the picture like? Could you give me a streamlined description?",
    "Can you provide me with a brief description of the region in the picture marked by <region>, please?",
    "I'm curious about the region represented by <region> in the picture. Could you describe it in few words, please?",
    "What can you tell me about the region indicated by <region> in the image?",
    "I'd like to know more about the area in the photo labeled <region>, please. Can you give me a simple description?",
    "Could you describe the region shown as <region> in the picture in several words?",
    "Please provide me with a simple description of the region marked with <region> in the image, please.",
    "I'm interested in learning more about the region represented by <region> in the photo. Can you describe it in few words, please?",
    "What is the region outlined by <region> in the picture like, please? Could you give me a simple and clear description?",
    "Please describe the region <region> in the image concisely.",
    "Can you offer a simple analysis of the region <region> in the image?",
    "Could tell me something about the region highlighted by <region> in the picture briefly?",
    "Can you share a simple rundown of the region denoted by <region> in the presented image?",
)

WHY_QUESTIONS = (  # VCR rationale turn
    "why?",
    "why",
    "What's the rationale for your decision?",
    "What led you to that conclusion?",
    "What's the reasoning behind your opinion?",
    "Why do you believe that to be true?",
    "Can you explain the basis for your thinking?",
    "What factors influenced your perspective?",
    "How did you arrive at that perspective?",
    "What evidence supports your viewpoint?",
    "What makes you think that way?",
    "What's the logic behind your argument?",
    "Can you provide some context for your opinion?",
    "What's the basis for your assertion?",
    "Why do you hold that belief?",
    "What experiences have shaped your perspective?",
    "What assumptions underlie your reasoning?",
    "What's the foundation of your assertion?",
    "What's the source of your reasoning?",
    "What's the motivation behind your decision?",
    "What's the impetus for your belief?",
    "What's the driving force behind your conclusion?",
    "Why do you think that?",
    "What's your reasoning?",
    "What makes you say that?",
    "Why do you feel that way?",
    "What's the story behind that?",
    "What's your thought process?",
    "What's the deal with that?",
    "What's the logic behind it?",
    "Why do you believe that?",
    "What's the real deal here?",
    "What's the reason behind it?",
    "What's the thought process behind your decision?",
    "What's the rationale for your opinion?",
    "Why do you have that impression?",
    "What's the background to that?",
    "What's the evidence that supports your view?",
    "What's the explanation for that?",
)

VCR_REGION_PREFIXES = (  # "<region>" -> "region1 <mask><pos>,region2 <mask><pos>,..." (with a space)
    "There are <region> in the image,",
    "There are some regions <region>,",
    "Given <region>,",
    "Given <region> in the image,",
    "<region>,",
    "Several regions <region> are in the image,",
    "<region> in the given image,",
)


def vcr_region_list(n: int) -> str:
    """VCR's region listing: ``region1 <mask><pos>,region2 <mask><pos>,...`` (note the space)."""
    return ",".join(f"region{i + 1} {REGION}" for i in range(n))
