"""Prompt text the Osprey-724K generation depended on, kept verbatim as data.

Sources (facts of the method, reproduced character for character, typos included):

* ``osprey/data_generation/{description,conversation,concise_qa}/*.txt`` of the original
  repository: the GPT-4 system messages and one-shot examples of the object-level tasks. The
  repository ships no ``conversation/ask_example.txt``; its ``conversation/res_example.txt`` answers
  the market scene of ``concise_qa/ask_example.txt`` (the paper's Table 14 shows both responses
  for that one context), so the conversation task reuses that context as its example question.
* The paper's appendix: the part-level attribute system message (Table 20), the part-level
  example context and its question-answer pairs (Table 15; the paper prints them as a list, the
  numbered "Question N / Answer N" layout here matches the other examples), and the nine
  positive/negative question templates (Table 23).

Answer pools for the positive/negative questions and the part-category question pool are ours:
the paper prints only examples of them (Tables 15 and 16), which are included.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Detailed region description (description/*.txt)

DESCRIPTION_SYSTEM = (
    "You are an AI visual assistant that can analyze a single image. You receive a detailed "
    "description/several descriptions of this image. In addition, most object locations within "
    "the image are given, along with detailed coordinates.\n"
    "These coordinates are in the form of bounding boxes, represented as (x1, y1, x2, y2) with "
    "floating numbers ranging from 0 to 1.These values correspond to the top left x, top left y, "
    "bottom right x, and bottom right y.\n"
    "Your role is to give a detailed description of each special region in the image. Instead of "
    "directly mentioning the bounding box coordinates, utilize this data to explain each region "
    "using natural language. Include details like object category, object type, object color, "
    "attributes of the object, object locations, object state and other attributes.\n"
    "When using the information from the image and object region captions and coordinates, "
    "directly explain the region, and do not mention that the information source is the caption "
    "or the bounding box. Always answer as if you are directly looking at each region. Provide a "
    'direct answer without mention "this region". The answer template is: "<region1>: ..."'
)

# sic: the original example writes the caption blocks as "<regin1>", "<regin2>".
DESCRIPTION_ASK_EXAMPLE = (
    "The detailed description of this image:\n"
    "In the image, a man wearing a white apron and a ball cap is standing in a kitchen. He appears "
    "to be a chef or a baker and is actively sliding a pizza into a brick oven. The kitchen is "
    "well-equipped with various tools and utensils, such as spoons and bowls, which are placed on "
    "the dining table and countertops. A chair is positioned near the table, and multiple bowls "
    "can be found throughout the kitchen. The scene conveys a sense of preparation and "
    "anticipation for the dish being cooked.\n"
    "chair: [0.437,0.840,0.808,1.000]\n"
    "person: [0.530,0.881,0.998,0.987]\n"
    "person: [0.223,0.202,0.580,0.954]\n"
    "spoon: [0.068,0.423,0.089,0.435]\n"
    "Specially, there are 2 special regions: <region1> and <region2>.\n"
    "For each one region, you receive several sentences as the description of this region in this "
    "image you are observing.\n"
    "For <regin1>(person: [0.223,0.202,0.580,0.954]):\n"
    "man chef\n"
    "man cooking\n"
    "\n"
    "For <regin2>(person: [0.530,0.881,0.998,0.987]):\n"
    "i think its a table infront of the chair\n"
    "top of head bottom right corner\n"
    "part of head seen near chair"
)

DESCRIPTION_RES_EXAMPLE = (
    "<region1>: A man wearing a white apron, possibly a chef or a baker, is actively cooking in a "
    "well-equipped kitchen. He is standing near the brick oven and appears to be sliding a pizza "
    "into it.\n"
    "\n"
    "<region2>: The top of a person's head is partially visible near the chair, it appears to be a "
    "brown-haired individual, though not much else can be discerned from this angle."
)

# ---------------------------------------------------------------------------------------------
# Conversation (conversation/*.txt; the example context is concise_qa/ask_example.txt)

CONVERSATION_SYSTEM = (
    "You are an AI visual assistant, and you are seeing several object regions in a single image. "
    "What you see are provided with a detailed description for the whole image and each object "
    "region in this image, describing you are looking at. Answer all questions as you are seeing "
    "the image.\n"
    "The location of each object region is given in the form of bounding boxes, represented as "
    "(x1, y1, x2, y2) with floating numbers ranging from 0 to 1. These values correspond to the "
    "top left x, top left y, bottom right x, and bottom right y. \n"
    "Design a conversation between you and a person asking about each object region of this "
    "image. The answers should be in a tone that a visual AI assistant is seeing the image and "
    "answering the question. Ask diverse questions and give corresponding answers. All the regions "
    "given should be mentioned in the questions, when referring to each region, use <region1>, "
    "<region2>, etc.\n"
    "Include questions asking about the visual content of each object region in the image, "
    "including the object category, object type, object color, object actions, object locations, "
    "relative positions between objects and other attributes etc. Only include questions that "
    "have definite answers:\n"
    "(1) one can see the content in the object region of this image that the question asks about "
    "and can answer confidently;\n"
    "(2) one can determine confidently from the object region of this image that it is not in the "
    "image.\n"
    "Do not ask any question that cannot be answered confidently.\n"
    "Also include complex questions that are relevant to the content of each object region in the "
    "image, for example, asking about background knowledge of the objects, asking to discuss about "
    "events happening in the image, etc. Again, do not ask about uncertain details.\n"
    "Provide detailed answers when answering complex questions. For example, give detailed "
    "examples or reasoning steps to make the content more convincing and well-organized. You can "
    "include multiple paragraphs if necessary."
)

CONVERSATION_RES_EXAMPLE = (
    "Question 1: Can you describe the woman in <region1> and what she is doing?\n"
    "\n"
    "Answer 1: The woman in <region1> is wearing a gray shirt, jeans, and glasses. She has short "
    "hair and a watch on her wrist. She is shopping in the lively market, browsing through the "
    "fresh produce, such as fruits and bags.\n"
    "\n"
    "Question 2: What can you tell me about the woman in <region2>?\n"
    "\n"
    "Answer 2: The woman in <region2> is wearing a navy blue shirt or sweater. She has her back "
    "towards the camera, with her hair styled in a barrette. She appears to be an older woman, "
    "also browsing through the market, looking at the various items for sale.\n"
    "\n"
    "Question 3: Can you compare the positions of the women in <region1> and <region2> within the "
    "image?\n"
    "\n"
    "Answer 3: The woman in <region1> is positioned more towards the right side of the image, "
    "facing the camera. On the other hand, the woman in <region2> is located on the left side of "
    "the image with her back to the camera. Both women are engaged in shopping at the market, "
    "surrounded by fresh fruits and bags.\n"
    "\n"
    "Question 4: Which fruits are visible in the image, and are there any other types of "
    "merchandise for sale?\n"
    "\n"
    "Answer 4: Bananas, oranges, and apples are visible in the image as the showcased fruits. "
    "Besides fruits, there are handbags also being sold at the market. These items are attracting "
    "the attention of the customers as they explore the market and contemplate their purchases.\n"
    "\n"
    "Question 5: Based on the image, how would you describe the overall atmosphere of the market?\n"
    "\n"
    "Answer 5: The market has a bustling and lively atmosphere. There's a sense of excitement and "
    "energy as people gather around the fresh fruits and bags for sale. The variety of items "
    "available, as well as the interactions among customers, contribute to the vibrant ambience "
    "of the market scene."
)

# ---------------------------------------------------------------------------------------------
# Short-form QA (concise_qa/*.txt)

SHORT_FORM_SYSTEM = (
    "You are an AI visual assistant, and you are seeing several object regions in a single image. "
    "What you see are provided with a detailed description for the whole image and each object "
    "region in this image, describing you are looking at. Answer all questions as you are seeing "
    "the image.\n"
    "The location of each object region is given in the form of bounding boxes, represented as "
    "(x1, y1, x2, y2) with floating numbers ranging from 0 to 1. These values correspond to the "
    "top left x, top left y, bottom right x, and bottom right y.\n"
    "Design a conversation between you and a person asking about each object region of this "
    "image. The answers must be in one word or one phrase. Ask diverse questions and give "
    "corresponding answers. All the regions given should be mentioned in the questions, when "
    "referring to each region, use <region1>, <region2>, etc.\n"
    "Include questions asking about the visual content of each object region in the image, "
    "including the object category, object type, object color, object actions, object locations, "
    "relative positions between objects and other attributes etc. Only include questions that "
    "have definite answers:\n"
    "(1) one can see the content in the object region of this image that the question asks about "
    "and can answer confidently;\n"
    "(2) one can determine confidently from the object region of this image that it is not in the "
    "image.\n"
    "Do not ask any question that cannot be answered confidently. \n"
    "Do not ask any question that is not mentioned.\n"
    "Do not ask any question that cannot be answered with one word or phrase.\n"
    "\n"
    "Most importantly, the answer must be in one word or short phrase."
)

QA_ASK_EXAMPLE = (
    'Whole description: "The image presents a lively market scene with a group of people buying '
    "fruits and bags. There are multiple individuals in the market, all browsing through the fresh "
    "produce available. A significant variety of fruits are showcased in the market, including "
    "bananas, oranges, and apples. Bananas can be seen in several groups, with some green and "
    "yellow bananas occupying different areas of the market. Meanwhile, oranges and apples are "
    "displayed in smaller sections among the fruits. In addition to fruits, handbags are also "
    "being sold at the market, attracting the attention of the customers. Overall, the market "
    "bustles with activity as people gather around the fresh fruits and bags, contemplating their "
    'purchases."\n'
    "\n"
    "Description of each region is listed below:\n"
    "\n"
    "<region1> (person: [0.507,0.409,0.698,0.740]):\n"
    "gray shirt wearing glasses\n"
    "woman with gray shirt standing next to man\n"
    "woman in gray shirt facing camera on right\n"
    "the woman in the grey shirt with a watch on her wrist ..\n"
    "a short haired woman in jeans shopping\n"
    "\n"
    "<region2> (person: [0.243,0.469,0.558,0.746]):\n"
    "navy blue shirt\n"
    "woman back in blue\n"
    "the lady with the blue shirt\n"
    "the back of an older woman with her hair in a barrette with a blue jacket on\n"
    "a woman is wearing blue sweater\n"
    "\n"
)

SHORT_FORM_RES_EXAMPLE = (
    "Question 1: What is the woman in <region1> wearing on her wrist?\n"
    "\n"
    "Answer 1: Watch.\n"
    "\n"
    "Question 2: What is the color of the older woman's shirt in <region2>?\n"
    "\n"
    "Answer 2: Navy blue.\n"
    "\n"
    "Question 3: What hair accessory does the older woman in <region2> have?\n"
    "\n"
    "Answer 3: Barrette.\n"
    "\n"
    "Question 4: Which direction is the older woman in <region2> facing?\n"
    "\n"
    "Answer 4: Away.\n"
    "\n"
)

# ---------------------------------------------------------------------------------------------
# Part-level attributes (paper Table 20 system message, Table 15 example)

PART_SYSTEM = (
    "You are an AI visual assistant that can analyze a single image. There are some regions in "
    "this image, each region is an object or a part of the object. You receive a short "
    "description with some words, separated by commas, for the common attributes of each region, "
    "which may contain category name, color, pattern and markings, material and reflectance. If a "
    'region is a part of an object, the category name is described as "object:part", like '
    '"person:body".\n'
    "\n"
    "According to each description, design a conversation between you and a person asking about "
    "each region of this photo. The answers should be in a tone that a visual AI assistant is "
    "seeing the image and answering the question. Ask diverse questions and give corresponding "
    "answers.\n"
    "\n"
    "Include diverse questions asking about the attributes of each region including category, "
    "part category, color, pattern and markings, material and reflectance. Each region must "
    "involve 1-2 questions, when referring to each region, use <region1>, <region2>, etc. Answer "
    "the question using as few words as possible (single or two words). Only include questions "
    "that have definite answers."
)

PART_ASK_EXAMPLE = (
    "<region1> spoon: dark grey, plain, metal, opaque\n"
    "<region2> bowl: dark green, plain, ceramic, opaque\n"
    "<region3> spoon:tip: dark grey, plain, metal, opaque\n"
    "<region4> spoon:bowl: light grey, plain, metal, opaque\n"
    "<region5> spoon:neck: dark grey, plain, metal, opaque\n"
    "<region6> spoon:handle: dark grey, plain, metal, opaque\n"
    "<region7> bowl:inner body: dark green, plain, ceramic, opaque\n"
    "<region8> bowl:rim: dark green, plain, ceramic, opaque"
)

_PART_EXAMPLE_PAIRS = (
    ("What's in <region1>?", "Spoon."),
    ("What is the color of <region2>?", "Dark green."),
    ("Tell me about the color of the tip of spoon in <region3>.", "Dark grey."),
    ("What's the category of <region4>?", "Bowl of a spoon."),
    ("What is the color of <region5>?", "Dark grey."),
    ("Is the handle of spoon plain in <region6>?", "Yes."),
    ("What is the reflectance of <region7>?", "Opaque."),
    ("What's the material of <region8>?", "Ceramic."),
)
PART_RES_EXAMPLE = "\n\n".join(
    f"Question {i}: {q}\n\nAnswer {i}: {a}" for i, (q, a) in enumerate(_PART_EXAMPLE_PAIRS, 1)
)

# ---------------------------------------------------------------------------------------------
# Part categories, asked from the annotations without an LLM. Table 15's category questions
# first, then ours in the same register. "<region>" is replaced by "<regionK>".

PART_CATEGORY_QUESTIONS = (
    "What's in <region>?",
    "What's the category of <region>?",
    "What is the category of <region>?",
    "What is shown in <region>?",
    "What object or part is <region>?",
    "Can you name the category of <region>?",
    "Which category does <region> belong to?",
    "What is <region>?",
)

# ---------------------------------------------------------------------------------------------
# Positive/negative category questions (paper Table 23); "<category>" and "<region>" are filled in.

POSNEG_QUESTIONS = (
    "<category> is the category of <region>, right?",
    "Is the category of <region> <category>?",
    "Does this area <region> belong to category <category>?",
    "Is <category> the appropriate classification for this area <region>?",
    "Does category <category> accurately describe this region <region>?",
    "The category of <region> is <category>, right?",
    "Is this area <region> classified under category <category>?",
    "Is it correct to say this area <region> falls into category <category>?",
    "Is the classification of this region <region> aligned with category <category>?",
)

# Table 16 shows "Yes, it is." for positives and "No, it isn't.", "Not at all.", "This is not so."
# and "No, there is no salad in the region." for negatives; the other entries are ours.
POSNEG_YES_ANSWERS = (
    "Yes, it is.",
    "Yes.",
    "Yes, that's right.",
    "Correct, it is <category>.",
    "Yes, this region is <category>.",
)
POSNEG_NO_ANSWERS = (
    "No, it isn't.",
    "Not at all.",
    "This is not so.",
    "No, there is no <category> in the region.",
    "No.",
    "No, this region is not <category>.",
)
