"""Rule-based extraction of COCO object mentions from text, as CHAIR defines it (Rohrbach et al., 2018).

A caption becomes a list of :class:`ObjectMention` s by these steps (the reference's order):

1. lower-case, :func:`~mmpo.benchmarks.text.word_tokenize`, :func:`~mmpo.benchmarks.text.singularize`
   every token;
2. merge two-word phrases left to right: a pair in :attr:`CocoObjectExtractor.double_words` becomes one
   token (its mapped value) and the scan skips both words. The phrases are every two-word synonym
   below ("hot dog", "teddy bear", "cell phone", ...), plus four groups of rules:
   ``baby X`` / ``adult X`` -> ``X`` for animals (otherwise "baby"/"adult" fire as *person*),
   ``passenger jet|train`` -> ``jet|train`` (otherwise "passenger" fires as *person*),
   ``bow tie`` -> ``tie``, ``toilet seat`` -> ``toilet``, and ``home plate`` / ``train track``, which
   map to themselves, are no COCO object and so just stop "plate" and "train" from firing;
3. if the caption contains both "toilet" and "seat", drop every "seat" (a toilet seat is not a chair);
4. keep the tokens that are COCO synonyms and map each to its canonical category.

Every occurrence is a mention: duplicates count (CHAIRi is mention-level).

The synonym table was written for this project from the 80 COCO category names and common words
for them; it follows the synonym list that CHAIR popularised (LisaAnne/Hallucination
``data/synonyms.txt``: same canonical names, same synonym sets, including caption misspellings such as
"televison"), but it is not a copy of that file: duplicates and the unmatchable mixed-case "iPhone"
are left out, and the reference's ``wine glas`` rule is unnecessary because our singulariser keeps
"glass" (see :mod:`mmpo.benchmarks.text`). "dining table" is a synonym, so "dining table" is merged
into one mention here, while the reference splits it and maps the lone "table"; both give one
*dining table* mention.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmpo.benchmarks.text import singularize, word_tokenize

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
    "home plate": "home plate",
    "train track": "train track",
}


@dataclass(frozen=True)
class ObjectMention:
    """One COCO object occurrence: the (singularised, merged) word and its canonical category."""

    word: str
    category: str


class CocoObjectExtractor:
    """Caption -> COCO object mentions by the CHAIR rules (see the module docstring)."""

    def __init__(self, synonyms: dict[str, tuple[str, ...]] = COCO_SYNONYMS) -> None:
        self.category_of: dict[str, str] = {}
        for category, words in synonyms.items():
            for word in (category, *words):
                self.category_of[word] = category
        self.double_words: dict[str, str] = {w: w for w in self.category_of if len(w.split(" ")) == 2}
        for animal in BABY_ADULT_ANIMALS:
            self.double_words[f"baby {animal}"] = animal
            self.double_words[f"adult {animal}"] = animal
        for vehicle in PASSENGER_VEHICLES:
            self.double_words[f"passenger {vehicle}"] = vehicle
        self.double_words.update(SPECIAL_DOUBLE_WORDS)

    def tokens(self, caption: str) -> list[str]:
        """Steps 1-3: singularised tokens with two-word phrases merged and toilet seats removed."""
        words = [singularize(token) for token in word_tokenize(caption.lower())]
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
