"""Rule-based extraction of COCO object mentions from text, as CHAIR defines it (Rohrbach et al., 2018).

A caption becomes a list of :class:`ObjectMention` s by the steps of the official code:

1. ``word_tokenize(caption.lower())`` (:func:`~mmpo.benchmarks.text.word_tokenize`, i.e. NLTK's), then
   singularise every token (per variant, below);
2. merge two-word phrases left to right: a pair in :attr:`CocoObjectExtractor.double_words` becomes one
   token (its mapped value) and the scan skips both words. The phrases are two-word synonyms
   ("hot dog", "teddy bear", "cell phone", ...; which ones depends on the variant) plus the same rules in
   both variants: ``baby X`` / ``adult X`` -> ``X`` for animals (otherwise "baby"/"adult" fire as
   *person*), ``passenger jet|train`` -> ``jet|train``, ``bow tie`` -> ``tie``, ``toilet seat`` ->
   ``toilet``, ``wine glas`` -> ``wine glass``, and ``home plate`` / ``train track``, which map to
   themselves, are no COCO object and so just stop "plate" and "train" from firing;
3. if the caption contains both "toilet" and "seat", drop every "seat" (a toilet seat is not a chair);
4. keep the tokens that are COCO synonyms and map each to its canonical category.

Every occurrence is a mention: duplicates count (CHAIRi is mention-level).

Variants (``variant``, one of :data:`VARIANTS`), each reproducing one official code:

- ``rlhf_v`` (default; Object HalBench as RLHF-V, RLAIF-V and mDPO score it): RLHF-V @8daac8a
  ``eval/eval_gpt_obj_halbench.py`` without ``--use_gpt`` and its ``synonyms_refine.txt``. Tokens are
  singularised by NLTK's ``WordNetLemmatizer`` (the official lemmatiser itself); the synonyms are the
  table below plus :data:`RLHF_V_EXTRA_SYNONYMS`; every multi-word synonym is a double word. No known
  difference. Quirks it keeps because the official code has them: WordNet knows "men" as a noun
  lemma, so "men" stays "men" and is no *person* mention (while "women" -> "woman" is); "glasses" ->
  "glass" (so "wine glasses" is *wine glass*).
- ``original``: LisaAnne/Hallucination @6e4d33c ``utils/chair.py`` and ``data/synonyms.txt`` (Rohrbach
  et al.). Its synonyms are the table below without :data:`ORIGINAL_UNMATCHABLE`, and its hard-coded
  double-word list is every two-word synonym but "dining table" (:data:`ORIGINAL_UNMERGED`; the lone
  "table" still maps to *dining table*, one mention either way). Quirks kept: "motor bike" and
  "cheesecake" never count (the file spells them with a leading space after ``split(', ')``).
  Remaining difference: the official code singularises with ``pattern.en.singularize``, which no
  longer installs; here ``inflect``'s ``singular_noun`` stands in (:func:`~mmpo.benchmarks.text.
  inflect_singular`). Both strip the ``s`` of singular words ("bus" -> "bu", so a singular "bus" is
  no mention in either; "tennis" -> "tenni", the lone "racket" still maps), but, read off pattern's
  rules: pattern turns "grandchildren" into "grandchild" (*person*) where inflect leaves it (no
  mention here); pattern returns -ie plurals in its list unchanged ("collies", "cookies": no mention
  in the original, *dog* here for "collies"); pattern gives "magpy" for "magpies" (no mention; *bird*
  here); pattern gives "glas" for "glass" and inflect "glass" (no effect: "wine glas" and "wine glass"
  both map to *wine glass*, a lone "glass" is no COCO word).

Left out of both, as they cannot match: the original's mixed-case "iPhone" (tokens are lower-cased),
the three-word "stove top oven" (only pairs are merged) and the files' duplicate entries.
The synonym table was written for this project from the 80 COCO category names and the words the
CHAIR lists map to them (caption misspellings such as "televison" included); it is not a copy of
either file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mmpo.benchmarks import nltk_data
from mmpo.benchmarks.text import inflect_singular, word_tokenize, wordnet_lemma

#: CHAIR variants (module docstring): name -> (singulariser, NLTK data packages it needs).
VARIANTS: dict[str, tuple[Callable[[str], str], tuple[str, ...]]] = {
    "rlhf_v": (wordnet_lemma, ("punkt_tab", "wordnet")),
    "original": (inflect_singular, ("punkt_tab",)),
}

# Canonical COCO category name -> other words (singular, lower case) that denote it.
COCO_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "girl", "boy", "man", "woman", "kid", "child", "chef", "baker", "people", "adult", "rider",
        "children", "baby", "worker", "passenger", "sister", "biker", "policeman", "cop", "officer",
        "lady", "cowboy", "bride", "groom", "male", "female", "guy", "traveler", "mother", "father",
        "gentleman", "pitcher", "player", "skier", "snowboarder", "skater", "skateboarder", "foreigner",
        "caller", "offender", "coworker", "trespasser", "patient", "politician", "soldier", "solider",
        "grandchild", "serviceman", "walker", "drinker", "doctor", "bicyclist", "thief", "buyer",
        "teenager", "student", "camper", "driver", "hunter", "shopper", "villager",
    ),
    "bicycle": ("bike", "unicycle", "minibike", "trike"),
    "car": (
        "automobile", "van", "minivan", "sedan", "suv", "hatchback", "cab", "jeep", "coupe", "taxicab",
        "limo", "taxi",
    ),
    "motorcycle": ("scooter", "motor bike", "motor cycle", "motorbike", "moped"),
    "airplane": (
        "jetliner", "plane", "air plane", "monoplane", "aircraft", "jet", "airbus", "biplane", "seaplane",
    ),
    "bus": ("minibus", "trolley"),
    "train": ("locomotive", "tramway", "caboose"),
    "truck": ("pickup", "lorry", "hauler", "firetruck"),
    "boat": (
        "ship", "liner", "sailboat", "motorboat", "dinghy", "powerboat", "speedboat", "canoe", "skiff",
        "yacht", "kayak", "catamaran", "pontoon", "houseboat", "vessel", "rowboat", "trawler", "ferryboat",
        "watercraft", "tugboat", "schooner", "barge", "ferry", "sailboard", "paddleboat", "lifeboat",
        "freighter", "steamboat", "riverboat", "battleship", "steamship",
    ),
    "traffic light": ("street light", "traffic signal", "stop light", "streetlight", "stoplight"),
    "fire hydrant": ("hydrant",),
    "stop sign": (),
    "parking meter": (),
    "bench": ("pew",),
    "bird": (
        "ostrich", "owl", "seagull", "goose", "duck", "parakeet", "falcon", "robin", "pelican", "waterfowl",
        "heron", "hummingbird", "mallard", "finch", "pigeon", "sparrow", "seabird", "osprey", "blackbird",
        "fowl", "shorebird", "woodpecker", "egret", "chickadee", "quail", "bluebird", "kingfisher",
        "buzzard", "willet", "gull", "swan", "bluejay", "flamingo", "cormorant", "parrot", "loon",
        "gosling", "waterbird", "pheasant", "rooster", "sandpiper", "crow", "raven", "turkey", "oriole",
        "cowbird", "warbler", "magpie", "peacock", "cockatiel", "lorikeet", "puffin", "vulture", "condor",
        "macaw", "peafowl", "cockatoo", "songbird",
    ),
    "cat": ("kitten", "feline", "tabby"),
    "dog": (
        "puppy", "beagle", "pup", "chihuahua", "schnauzer", "dachshund", "rottweiler", "canine", "pitbull",
        "collie", "pug", "terrier", "poodle", "labrador", "doggie", "doberman", "mutt", "doggy", "spaniel",
        "bulldog", "sheepdog", "weimaraner", "corgi", "cocker", "greyhound", "retriever", "brindle", "hound",
        "whippet", "husky",
    ),
    "horse": (
        "colt", "pony", "racehorse", "stallion", "equine", "mare", "foal", "palomino", "mustang",
        "clydesdale", "bronc", "bronco",
    ),
    "sheep": ("lamb", "ram", "goat", "ewe"),
    "cow": ("cattle", "oxen", "ox", "calf", "holstein", "heifer", "buffalo", "bull", "zebu", "bison"),
    "elephant": (),
    "bear": ("panda",),
    "zebra": (),
    "giraffe": (),
    "backpack": ("knapsack",),
    "umbrella": (),
    "handbag": ("wallet", "purse", "briefcase"),
    "tie": ("bow", "bow tie"),
    "suitcase": ("suit case", "luggage"),
    "frisbee": (),
    "skis": ("ski",),
    "snowboard": (),
    "sports ball": ("ball",),
    "kite": (),
    "baseball bat": (),
    "baseball glove": (),
    "skateboard": (),
    "surfboard": ("longboard", "skimboard", "shortboard", "wakeboard"),
    "tennis racket": ("racket",),
    "bottle": (),
    "wine glass": (),
    "cup": (),
    "fork": (),
    "knife": ("pocketknife", "knive"),
    "spoon": (),
    "bowl": ("container",),
    "banana": (),
    "apple": (),
    "sandwich": ("burger", "sub", "cheeseburger", "hamburger"),
    "orange": (),
    "broccoli": (),
    "carrot": (),
    "hot dog": (),
    "pizza": (),
    "donut": ("doughnut", "bagel"),
    "cake": ("cheesecake", "cupcake", "shortcake", "coffeecake", "pancake"),
    "chair": ("seat", "stool"),
    "couch": ("sofa", "recliner", "futon", "loveseat", "settee", "chesterfield"),
    "potted plant": ("houseplant",),
    "bed": (),
    "dining table": ("table", "desk"),
    "toilet": ("urinal", "commode", "lavatory", "potty"),
    "tv": ("monitor", "televison", "television"),
    "laptop": ("computer", "notebook", "netbook", "lenovo", "macbook", "laptop computer"),
    "mouse": (),
    "remote": (),
    "keyboard": (),
    "cell phone": ("mobile phone", "phone", "cellphone", "telephone", "phon", "smartphone"),
    "microwave": (),
    "oven": ("stovetop", "stove"),
    "toaster": (),
    "sink": (),
    "refrigerator": ("fridge", "freezer"),
    "book": (),
    "clock": (),
    "vase": (),
    "scissors": (),
    "teddy bear": ("teddybear",),
    "hair drier": ("hairdryer",),
    "toothbrush": (),
}  # fmt: skip
#: Synonyms that RLHF-V's ``synonyms_refine.txt`` adds to the original list.
RLHF_V_EXTRA_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("brother", "pedestrian"),
    "dining table": ("coffee table",),
    "remote": ("remote control",),
}
#: Synonyms that the original ``synonyms.txt`` lists with a leading space, so that they never match.
ORIGINAL_UNMATCHABLE = frozenset({"motor bike", "cheesecake"})
#: Two-word synonyms missing from the original's hard-coded double-word list.
ORIGINAL_UNMERGED = frozenset({"dining table"})
#: Animals for the ``baby X`` / ``adult X`` rule ("cub" and "animal" are no synonyms; kept as in CHAIR).
BABY_ADULT_ANIMALS = (
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "animal",
    "cub",
)
#: Vehicles for the ``passenger X`` rule.
PASSENGER_VEHICLES = ("jet", "train")
#: Two-word phrases with a fixed mapping (applied after the two-word synonyms, so they win).
SPECIAL_DOUBLE_WORDS = {
    "bow tie": "tie",
    "toilet seat": "toilet",
    "wine glas": "wine glass",
    "home plate": "home plate",
    "train track": "train track",
}


@dataclass(frozen=True)
class ObjectMention:
    """One COCO object occurrence: the (singularised, merged) word and its canonical category."""

    word: str
    category: str


class CocoObjectExtractor:
    """Caption -> COCO object mentions by the CHAIR rules of one official ``variant`` (module docstring)."""

    def __init__(self, variant: str = "rlhf_v") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"CHAIR variant must be one of {list(VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.singularize, packages = VARIANTS[variant]
        nltk_data.require(f"CHAIR (variant {variant!r})", packages)
        shared = {w: category for category, words in COCO_SYNONYMS.items() for w in (category, *words)}
        if variant == "rlhf_v":
            extra = {w: category for category, words in RLHF_V_EXTRA_SYNONYMS.items() for w in words}
            self.category_of: dict[str, str] = shared | extra
            merged = [w for w in self.category_of if " " in w]
        else:
            self.category_of = {w: c for w, c in shared.items() if w not in ORIGINAL_UNMATCHABLE}
            merged = [w for w in shared if len(w.split(" ")) == 2 and w not in ORIGINAL_UNMERGED]
        self.double_words: dict[str, str] = {w: w for w in merged}
        for animal in BABY_ADULT_ANIMALS:
            self.double_words[f"baby {animal}"] = animal
            self.double_words[f"adult {animal}"] = animal
        for vehicle in PASSENGER_VEHICLES:
            self.double_words[f"passenger {vehicle}"] = vehicle
        self.double_words.update(SPECIAL_DOUBLE_WORDS)

    def tokens(self, caption: str) -> list[str]:
        """Steps 1-3: singularised tokens with two-word phrases merged and toilet seats removed."""
        words = [self.singularize(token) for token in word_tokenize(caption.lower())]
        merged: list[str] = []
        i = 0
        while i < len(words):
            pair = " ".join(words[i : i + 2])
            if i + 1 < len(words) and pair in self.double_words:
                merged.append(self.double_words[pair])
                i += 2
            else:
                merged.append(words[i])
                i += 1
        if "toilet" in merged and "seat" in merged:
            merged = [word for word in merged if word != "seat"]
        return merged

    def mentions(self, caption: str) -> list[ObjectMention]:
        """All COCO object mentions of ``caption`` in order, duplicates included."""
        return [ObjectMention(w, self.category_of[w]) for w in self.tokens(caption) if w in self.category_of]

    def canonical(self, category_name: str) -> str:
        """Canonical name of a COCO instance category (e.g. ``"dining table"``); must be in the table."""
        try:
            return self.category_of[category_name]
        except KeyError:
            raise KeyError(f"COCO category {category_name!r} is not in the synonym table") from None
