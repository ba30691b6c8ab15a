"""``concepts``: what an ImageNet CNN thinks the poster shows, as named visual concepts.

The ImageNet classifier's 1000 class probabilities are summed into a few dozen concepts a
person can check by looking at the poster ("guns or other weapons", "cars and roads",
"a gown or period dress", "a drawing or comic art"). They are cues for the interpretable
learner, so an explanation can say "looks like it shows weapons" where it would otherwise
credit an opaque embedding.

Posters are print: most of the classifier's mass goes to three print classes (web site,
comic book, book jacket: 61% on the training posters). Those three are concepts of their
own (how the poster is made: a photo layout with text, a drawing, a printed cover); every
other concept is the share of the rest of the mass (what the picture shows), so a poster
that looks strongly like a book jacket and shows a rifle still scores high for weapons.

The classes are those of torchvision's IMAGENET1K weights (all share one list and order).
The network is always the ImageNet one (never a fine-tuned backbone, whose 1000-class head
no longer fits its embedding), so these cues keep their meaning whatever ``cnn`` uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from postergenre.errors import ConfigError
from postergenre.features.base import Extractor


@dataclass(frozen=True)
class Concept:
    """A named visual concept: ImageNet class indices summed into one cue.

    ``phrase`` completes "looks like it shows ..." / "nothing that looks like ...";
    ``print_kind`` marks the three print classes (how the poster is made, not what it shows).
    """

    key: str
    phrase: str
    classes: tuple[int, ...]
    print_kind: bool = False


def _r(a: int, b: int) -> tuple[int, ...]:
    """Indices a..b inclusive."""
    return tuple(range(a, b + 1))


def _cat(*parts: Iterable[int] | int) -> tuple[int, ...]:
    out: list[int] = []
    for p in parts:
        out.extend([p] if isinstance(p, int) else p)
    return tuple(out)


#: The concepts in display order. Indices are torchvision's ImageNet class order (the
#: class names are in the comments). Each class belongs to at most one concept; classes in
#: none (household odds and ends, tools, most foods) count only in the normalisation.
CONCEPTS: tuple[Concept, ...] = (
    # How the poster is made (the three print classes).
    Concept("photo_layout", "a photo layout with text, like a web page", (916,), True),
    Concept("drawn_art", "a drawing or comic art", (917,), True),
    Concept("printed_cover", "a printed cover, like a book jacket", (921,), True),
    # What the picture shows.
    Concept(
        "weapons",
        "guns or other weapons",
        # assault rifle, rifle, revolver, holster, cannon, projectile, missile, bow,
        # scabbard, hatchet, cleaver, chain saw, letter opener (a knife), muzzle
        (413, 764, 763, 597, 471, 744, 657, 456, 777, 596, 499, 491, 623, 676),
    ),
    Concept(
        "military",
        "soldiers, uniforms or war machines",
        # military uniform, bulletproof vest, tank, warplane, half track, aircraft carrier,
        # submarine, amphibian, gasmask, pickelhaube, bearskin
        (652, 465, 847, 895, 586, 403, 833, 408, 570, 715, 439),
    ),
    Concept(
        "armour",
        "armour, shields or knights' gear",
        # breastplate, cuirass, chain mail, shield
        (461, 524, 490, 787),
    ),
    Concept(
        "cars",
        "cars, trucks or the road",
        # ambulance, beach wagon, cab, car mirror, car wheel, convertible, disk brake,
        # fire engine, garbage truck, go-kart, grille, jeep, limousine, minibus, minivan,
        # Model T, moving van, odometer, pickup, police van, racer, recreational vehicle,
        # school bus, seat belt, sports car, tow truck, trailer truck, crash helmet, moped,
        # motor scooter, gas pump
        (
            407,
            436,
            468,
            475,
            479,
            511,
            535,
            555,
            569,
            573,
            581,
            609,
            627,
            654,
            656,
            661,
            675,
            685,
            717,
            734,
            751,
            757,
            779,
            785,
            817,
            864,
            867,
            518,
            665,
            670,
            571,
        ),
    ),
    Concept(
        "aircraft_space",
        "aircraft, rockets or outer space",
        # airliner, airship, space shuttle, parachute, wing, planetarium, radio telescope,
        # solar dish
        (404, 405, 812, 701, 908, 727, 755, 807),
    ),
    Concept(
        "ships_sea",
        "ships, boats or the open sea",
        # container ship, liner, schooner, yawl, catamaran, trimaran, speedboat, fireboat,
        # lifeboat, canoe, paddle, gondola, paddlewheel, wreck, pirate, dock, pier,
        # breakwater, scuba diver, snorkel
        (
            510,
            628,
            780,
            914,
            484,
            871,
            814,
            554,
            625,
            472,
            693,
            576,
            694,
            913,
            724,
            536,
            718,
            460,
            983,
            801,
        ),
    ),
    Concept(
        "trains",
        "trains or railways",
        # steam locomotive, electric locomotive, bullet train, passenger car, freight car,
        # streetcar
        (820, 547, 466, 705, 565, 829),
    ),
    Concept("dogs", "a dog", _r(151, 268)),
    Concept("cats", "a cat or big cat", _r(281, 293)),
    Concept(
        "wild_animals",
        "wild animals (bears, wolves, apes, elephants...)",
        # tusker..wombat, wolves and foxes, bears, mongoose, meerkat, rabbits..giant panda
        _cat(_r(101, 106), _r(269, 280), _r(294, 299), _r(330, 338), _r(340, 388)),
    ),
    Concept(
        "birds",
        "birds",
        _cat(_r(7, 24), _r(80, 100), _r(127, 146)),
    ),
    Concept(
        "sea_creatures",
        "fish, sharks or sea creatures",
        _cat(_r(0, 6), _r(107, 109), _r(112, 126), _r(147, 150), _r(327, 329), _r(389, 397)),
    ),
    Concept(
        "creepy_crawlies",
        "snakes, spiders, insects or reptiles",
        # amphibians, reptiles, dinosaur, spiders, scorpion, worms, insects, spider web
        _cat(_r(25, 79), 110, 111, _r(300, 326), 815),
    ),
    Concept(
        "western",
        "cowboy hats, horses or Western gear",
        # cowboy hat, cowboy boot, sombrero, bolo tie, sorrel, horse cart, oxcart, poncho
        (515, 514, 808, 451, 339, 603, 690, 735),
    ),
    Concept(
        "suits",
        "suits and ties",
        # suit, Windsor tie, bow tie, groom, trench coat
        (834, 906, 457, 982, 869),
    ),
    Concept(
        "gowns",
        "a gown or period dress",
        # gown, hoopskirt, overskirt, fur coat, stole, feather boa, wig, bonnet, kimono,
        # sarong
        (578, 601, 689, 568, 824, 552, 903, 452, 614, 775),
    ),
    Concept(
        "swimwear",
        "swimwear or bare skin",
        # bikini, maillot, maillot tank suit, brassiere, swimming trunks, bathing cap,
        # sunscreen, lotion
        (445, 638, 639, 459, 842, 433, 838, 631),
    ),
    Concept(
        "sport",
        "sport: balls, jerseys, gyms or ice",
        # ballplayer, football helmet, baseball, basketball, soccer ball, rugby ball,
        # volleyball, tennis ball, golf ball, racket, scoreboard, punching bag, dumbbell,
        # barbell, balance beam, parallel bars, horizontal bar, ski, puck, croquet ball,
        # ping-pong ball, bobsled, jersey, knee pad, running shoe, golfcart, snowmobile
        (
            981,
            560,
            429,
            430,
            805,
            768,
            890,
            852,
            574,
            752,
            781,
            747,
            543,
            422,
            416,
            702,
            602,
            795,
            746,
            522,
            722,
            450,
            610,
            615,
            770,
            575,
            802,
        ),
    ),
    Concept(
        "music_stage",
        "musical instruments, microphones or a stage",
        # accordion, acoustic guitar, banjo, bassoon, cello, cornet, drum, drumstick,
        # electric guitar, flute, French horn, gong, grand piano, harmonica, harp, marimba,
        # maraca, oboe, ocarina, organ, panpipe, sax, steel drum, trombone, upright, violin,
        # microphone, loudspeaker, stage, spotlight, theater curtain, cassette, cassette
        # player, CD player, iPod, radio, tape player
        (
            401,
            402,
            420,
            432,
            486,
            513,
            541,
            542,
            546,
            558,
            566,
            577,
            579,
            593,
            594,
            642,
            641,
            683,
            684,
            687,
            699,
            776,
            822,
            875,
            881,
            889,
            650,
            632,
            819,
            818,
            854,
            481,
            482,
            485,
            605,
            754,
            848,
        ),
    ),
    Concept(
        "masks_cloaks",
        "masks, hoods or dark cloaks",
        # mask, ski mask, cloak, abaya, jack-o'-lantern, vestment
        (643, 796, 501, 399, 607, 887),
    ),
    Concept(
        "medical",
        "doctors, hospitals or medicine",
        # lab coat, stethoscope, syringe, pill bottle, neck brace, Band Aid, stretcher,
        # crutch, oxygen mask, Petri dish, medicine chest
        (617, 823, 845, 720, 678, 419, 830, 523, 691, 712, 648),
    ),
    Concept(
        "fire_candles",
        "candles, torches or flames",
        # candle, torch, matchstick, lighter, fire screen
        (470, 862, 644, 626, 556),
    ),
    Concept(
        "crime_locks",
        "prisons, locks, chains or safes",
        # prison, padlock, chain, safe, combination lock, vault, guillotine, hook
        (743, 695, 488, 771, 507, 884, 583, 600),
    ),
    Concept(
        "grand_buildings",
        "castles, palaces, churches or monuments",
        # castle, palace, church, monastery, mosque, dome, triumphal arch, obelisk,
        # megalith, stupa, cliff dwelling, throne, altar, bell cote, prayer rug, totem pole
        (483, 698, 497, 663, 668, 538, 873, 682, 649, 832, 500, 857, 406, 442, 741, 863),
    ),
    Concept(
        "city_street",
        "city streets, shops or bridges",
        # street sign, traffic light, cinema, restaurant, bakery, barbershop, bookshop,
        # butcher shop, shoe shop, tobacco shop, toyshop, grocery store, confectionery,
        # steel arch bridge, suspension bridge, viaduct, water tower, parking meter,
        # pay-phone, mailbox, manhole cover, trolleybus, fountain, turnstile
        (
            919,
            920,
            498,
            762,
            415,
            424,
            454,
            467,
            788,
            860,
            865,
            582,
            509,
            821,
            839,
            888,
            900,
            704,
            707,
            637,
            640,
            874,
            562,
            877,
        ),
    ),
    Concept(
        "home",
        "rooms and furniture at home",
        # four-poster, studio couch, bookcase, library, wardrobe, china cabinet, dining
        # table, rocking chair, bathtub, shower curtain, pillow, quilt, lampshade, table
        # lamp, desk, entertainment center, home theater, television, window shade,
        # sliding door, patio, chiffonier
        (
            564,
            831,
            453,
            624,
            894,
            495,
            532,
            765,
            435,
            794,
            721,
            750,
            619,
            846,
            526,
            548,
            598,
            851,
            905,
            799,
            706,
            493,
        ),
    ),
    Concept(
        "screens_tech",
        "computers, screens or phones",
        # desktop computer, laptop, monitor, screen, computer keyboard, hand-held computer,
        # cellular telephone, modem, hard disc, oscilloscope, joystick, remote control,
        # dial telephone, space bar, typewriter keyboard, mouse
        (527, 620, 664, 782, 508, 590, 487, 662, 592, 688, 613, 761, 528, 810, 878, 673),
    ),
    Concept(
        "landscape",
        "mountains, valleys or open country",
        # alp, cliff, valley, volcano, lakeside, geyser, mountain tent, hay, rapeseed,
        # daisy, worm fence, barn, thatch, yurt, dam
        (970, 972, 979, 980, 975, 974, 672, 958, 984, 985, 912, 425, 853, 915, 525),
    ),
    Concept(
        "beach",
        "a beach or sea shore",
        # seashore, sandbar, promontory, coral reef
        (978, 977, 976, 973),
    ),
    Concept(
        "food_drink",
        "food, drinks or bottles",
        # plate..pomegranate, carbonara..eggnog (958 hay is landscape), beer bottle,
        # beer glass, wine bottle, goblet, cocktail shaker, whiskey jug, coffee mug,
        # espresso maker, teapot, pop bottle
        _cat(_r(923, 957), _r(959, 969), 440, 441, 907, 572, 503, 901, 504, 550, 849, 737),
    ),
    Concept(
        "children_toys",
        "toys, babies or a fairground",
        # teddy, balloon, carousel, pinwheel, swing, jigsaw puzzle, piggy bank, crib,
        # cradle, bassinet, diaper, bib, tricycle, Christmas stocking
        (850, 417, 476, 723, 843, 611, 719, 520, 516, 431, 529, 443, 870, 496),
    ),
    Concept(
        "beauty",
        "make-up, perfume or jewellery",
        # lipstick, face powder, hair spray, perfume, hair slide, necklace
        (629, 551, 585, 711, 584, 679),
    ),
    Concept(
        "sunglasses",
        "sunglasses",
        (836, 837),
    ),
    Concept(
        "clocks",
        "clocks or hourglasses",
        # analog clock, wall clock, digital clock, stopwatch, sundial, hourglass,
        # digital watch, magnetic compass
        (409, 892, 530, 826, 835, 604, 531, 635),
    ),
)


def _check_concepts(concepts: Sequence[Concept]) -> None:
    seen: dict[int, str] = {}
    keys: set[str] = set()
    for c in concepts:
        if c.key in keys:
            raise ConfigError(f"concepts: key {c.key!r} appears twice")
        keys.add(c.key)
        for i in c.classes:
            if not 0 <= i < 1000:
                raise ConfigError(f"concepts: {c.key}: class {i} is not an ImageNet index")
            if i in seen:
                raise ConfigError(f"concepts: class {i} is in both {seen[i]} and {c.key}")
            seen[i] = c.key


_check_concepts(CONCEPTS)
BY_KEY: dict[str, Concept] = {c.key: c for c in CONCEPTS}


def membership() -> np.ndarray:
    """(1000, len(CONCEPTS)) 0/1 matrix: class i belongs to concept j."""
    M = np.zeros((1000, len(CONCEPTS)), dtype=np.float64)
    for j, c in enumerate(CONCEPTS):
        M[list(c.classes), j] = 1.0
    return M


def concept_scores(probs: np.ndarray) -> np.ndarray:
    """ImageNet class probabilities (n, 1000) -> concept scores (n, len(CONCEPTS)) in [0, 1].

    A print concept is its classes' probability; any other concept is its classes' share of
    the probability left after the print classes (see the module docstring).
    """
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 1000:
        raise ConfigError(f"concepts: expected (n, 1000) class probabilities, got {P.shape}")
    M = membership()
    raw = P @ M
    kind = np.array([c.print_kind for c in CONCEPTS])
    rest = np.clip(1.0 - raw[:, kind].sum(1, keepdims=True), 1e-6, None)
    out = np.where(kind[None, :], raw, raw / rest)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class ConceptsConfig:
    backbone: str = "mobilenet_v2"
    fit: str = "pad"
    input_size: int = 224
    batch_size: int = 32
    #: False: random weights (seeded), for tests without weights files.
    pretrained: bool = True
    seed: int = 0


class ConceptsExtractor(Extractor):
    """Named visual concepts from the ImageNet classifier (see the module docstring)."""

    name: ClassVar[str] = "concepts"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[Any]] = ConceptsConfig
    config: ConceptsConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        from postergenre.features.cnn import CNNConfig, CNNExtractor

        c = self.config
        # The cnn extractor's network and input handling, with its ImageNet head.
        self._cnn = CNNExtractor(
            CNNConfig(
                backbone=c.backbone,
                fit=c.fit,
                input_size=c.input_size,
                batch_size=c.batch_size,
                pretrained=c.pretrained,
                seed=c.seed,
                also=(),  # the ImageNet head of this one network is all it reads
            )
        )

    def feature_names(self) -> list[str]:
        return [f"concepts.{c.key}" for c in CONCEPTS]

    def _load(self, device: str) -> None:
        self._cnn.load(device)

    def class_probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 1000) ImageNet class probabilities of already checked RGB images."""
        return self._cnn.class_probabilities(images)

    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return concept_scores(self.class_probabilities(images))


def concept_sentence(key: str, level: int) -> str:
    """Words for one concept cue of one poster.

    ``level``: where this poster's score lies against the training posters (as
    :meth:`postergenre.cues.CueContext.level`: +2 above p90, +1 well above the median, 0
    typical, -1 / -2 below). The network guesses, so the words hedge ("seems to").
    """
    c = BY_KEY.get(key)
    if c is None:
        raise ConfigError(f"concepts: unknown concept {key!r}")
    strong, mild, typical, absent = _WORDS[c.print_kind]
    if level >= 2:
        return strong.format(c.phrase)
    if level >= 1:
        return mild.format(c.phrase)
    if level <= -1:
        return absent.format(c.phrase)
    return typical.format(c.phrase)


#: print_kind -> words for (well above p90, above, typical, below the training posters).
_WORDS: dict[bool, tuple[str, str, str, str]] = {
    True: ("it looks like {}", "it looks a little like {}", "somewhat like {}",
           "it does not look like {}"),
    False: ("it seems to show {}", "it may show {}", "little sign of {}",
            "nothing that looks like {}"),
}  # fmt: skip
