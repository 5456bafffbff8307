"""Speakers: an espeak-ng English accent combined with a voice variant
("en-us+m3"), split so that valid and test hold out whole variants."""

from __future__ import annotations

import numpy as np

# The eSpeak-native English accents.  The mbrola ("mb/...") English voices are
# left out: they need the separate mbrola program and voice packages.
ACCENTS = (
    "en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-gb-x-rp", "en-029", "en-us-nyc",
)

# Voice variants (files under espeak-ng-data/voices/!v), grouped so the
# held-out variants of each split cover every kind of timbre.  Left out:
#   whisper, whisperf, caleb  - unvoiced (no pitch at all): a command recogniser
#                               is not asked to handle whispering, and one
#                               whisper speaker would dominate a small test set;
#                               caleb is also byte-identical to klatt.
#   klatt6                    - byte-identical to klatt (would leak across splits).
#   robosoft*, RicishayMax*, UniRobot, anikaRobot, Demonic
#                             - heavy echo/"robot" effects, barely intelligible.
#   kaukovalta, Tweaky, zac   - first/third formant or pitch pushed so far that
#                               vowels stop sounding like English vowels.
#   Storm                     - forces language en-us, overriding the accent.
#   fast                      - only a speed change; rate is randomised anyway.
#   "Mr serious"              - near-copy of john, and its name contains a space.
VARIANT_GROUPS = {
    "female": (
        "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika",
        "aunty", "belinda", "grandma", "linda", "steph", "steph2", "steph3",
    ),
    "klatt": (
        "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "adam", "announcer",
        "benjamin", "david", "edward", "edward2",
    ),
    "male": (
        "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "croak", "Alex", "Andy",
        "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo",
        "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "antonio",
        "boris", "ed", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4",
        "john", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul",
        "pedro", "quincy", "rob", "robert", "sandro", "shelby", "travis", "victor",
    ),
}
HELDOUT_FRACTION = 0.1  # of each variant group, for valid and for test each
# The speaker split is fixed, independent of the corpus seed, so corpora made
# with different seeds (e.g. extra training data) never leak test voices.
SPEAKER_SPLIT_SEED = 20240601


SPLITS = ("train", "valid", "test")


def all_variants() -> tuple[str, ...]:
    return tuple(v for group in VARIANT_GROUPS.values() for v in group)


def speaker_split() -> dict[str, list[str]]:
    """Disjoint speakers per split, holding out whole variants.

    From each variant group a seeded shuffle picks ~10% of the variants for
    valid and ~10% for test (at least one each).  A split's speakers are its
    variants crossed with every accent; train also gets the plain accents.
    """
    rng = np.random.default_rng(SPEAKER_SPLIT_SEED)
    variants = {s: [] for s in SPLITS}
    for name in sorted(VARIANT_GROUPS):
        group = list(VARIANT_GROUPS[name])
        order = rng.permutation(len(group))
        n_held = max(1, round(HELDOUT_FRACTION * len(group)))
        variants["test"] += [group[i] for i in order[:n_held]]
        variants["valid"] += [group[i] for i in order[n_held:2 * n_held]]
        variants["train"] += [group[i] for i in order[2 * n_held:]]
    out = {s: [f"{a}+{v}" for v in sorted(variants[s]) for a in ACCENTS] for s in SPLITS}
    out["train"] = list(ACCENTS) + out["train"]  # the unmodified voices
    return out
