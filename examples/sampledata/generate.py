"""Synthetic thesis records: plausible titles, authors, MIT-like departments, abstracts and long full texts (seeded)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from examples.server.repo import NewDocument

__all__ = ["DEPARTMENTS", "generate_documents"]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


# department -> (degrees, topic words)
DEPARTMENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Department of Electrical Engineering and Computer Science": (
        ("S.B.", "M.Eng.", "S.M.", "Ph.D."),
        _words(
            "algorithm|compiler|circuit|network|learning|processor|protocol|graph|memory|transistor|"
            "scheduler|cryptography|kernel|signal|robot|verification|inference"
        ),
    ),
    "Department of Mechanical Engineering": (
        ("S.B.", "S.M.", "Ph.D."),
        _words(
            "turbine|friction|heat|actuator|fluid|vibration|manufacturing|gear|combustion|stress|tribology|"
            "control|design|prototype|wear"
        ),
    ),
    "Department of Physics": (
        ("S.B.", "Ph.D."),
        _words(
            "quantum|neutrino|lattice|plasma|spin|photon|superconductor|cosmology|boson|entanglement|"
            "dark matter|symmetry|gravitational wave|condensate"
        ),
    ),
    "Department of Chemistry": (
        ("S.B.", "Ph.D."),
        _words(
            "catalyst|polymer|synthesis|spectroscopy|ligand|enzyme|crystal|oxidation|reaction|solvent|"
            "molecule|peptide|electrochemistry"
        ),
    ),
    "Department of Biology": (
        ("S.B.", "Ph.D."),
        _words(
            "protein|gene|cell|neuron|genome|mutation|receptor|embryo|pathway|bacteria|transcription|"
            "immune response|chromatin"
        ),
    ),
    "Department of Economics": (
        ("S.B.", "Ph.D."),
        _words(
            "market|labor|inflation|policy|trade|auction|incentive|household|tax|credit|productivity|"
            "inequality|contract"
        ),
    ),
    "Department of Urban Studies and Planning": (
        ("M.C.P.", "Ph.D."),
        _words(
            "housing|zoning|transit|neighborhood|land use|infrastructure|community|resilience|mobility|"
            "displacement|governance"
        ),
    ),
    "Department of Architecture": (
        ("M.Arch.", "S.M.", "Ph.D."),
        _words("facade|daylight|timber|courtyard|structure|material|ornament|acoustics|pavilion|fabrication|landscape"),
    ),
    "Department of Earth, Atmospheric, and Planetary Sciences": (
        ("S.B.", "S.M.", "Ph.D."),
        _words(
            "ocean|climate|sediment|earthquake|aerosol|glacier|mantle|turbulence|monsoon|exoplanet|isotope|carbon cycle"
        ),
    ),
    "Department of Aeronautics and Astronautics": (
        ("S.B.", "S.M.", "Ph.D."),
        _words("spacecraft|propulsion|airfoil|satellite|trajectory|hypersonic|autonomy|orbit|wing|guidance|composite"),
    ),
    "Sloan School of Management": (
        ("M.B.A.", "S.M.", "Ph.D."),
        _words(
            "supply chain|strategy|operations|organization|innovation|finance|pricing|leadership|platform|"
            "entrepreneurship"
        ),
    ),
    "Department of Materials Science and Engineering": (
        ("S.B.", "S.M.", "Ph.D."),
        _words("alloy|ceramic|thin film|grain boundary|battery|semiconductor|corrosion|nanowire|dislocation|glass"),
    ),
}

_FIRST = _words(
    "Maria|James|Wei|Aisha|Carlos|Priya|John|Fatima|Hiroshi|Elena|David|Sofia|Kwame|Anna|Mohammed|Laura|Chen|"
    "Olga|Ravi|Grace|Thomas|Yuki|Samuel|Ingrid|Diego|Leila|Robert|Mei|Peter|Amara"
)
_LAST = _words(
    "Smith|Zhang|Garcia|Patel|Johnson|Kim|Nguyen|Müller|Okafor|Rossi|Cohen|Tanaka|Silva|Ivanova|Brown|Haddad|"
    "Larsen|Chen|Dubois|Kowalski|O'Brien|Singh|Martinez|Andersson|Wang|Yamamoto|Adeyemi|Novak|Fischer|Lopez"
)
_TITLE_FORMS = _words(
    "{A} {x} for {y} {z}|On the {x} of {y} in {z}|{A} approach to {y} {x}|Towards {x} {y}: {A} study of {z}|"
    "{y} and {z}: {x} in practice|Modeling {y} {x} with {z}|The role of {y} in {z} {x}"
)
_ADJECTIVES = _words(
    "scalable|robust|adaptive|efficient|novel|probabilistic|experimental|computational|empirical|distributed|"
    "low-cost|high-resolution|nonlinear"
)
_ACADEMIC = _words(
    "analysis|results|method|model|data|approach|evidence|framework|measurement|performance|hypothesis|"
    "system|estimate|sample|design|theory|effect|variation|structure|process|parameter|simulation|experiment|"
    "observation|behavior|limit|error|comparison|prediction|constraint"
)
_GLUE = _words(
    "the|of|and|in|a|to|is|we|that|for|with|this|on|by|as|are|from|which|these|be|an|our|can|between|under|"
    "not|more|than"
)
_SECTIONS = _words(
    "Introduction|Background|Related Work|Methods|Experimental Setup|Results|Discussion|Limitations|Conclusion"
)


def _sentence(rng: random.Random, words: list[str], weights: list[float]) -> str:
    chosen = rng.choices(words, weights=weights, k=rng.randint(8, 24))
    return chosen[0].capitalize() + " " + " ".join(chosen[1:]) + "."


def _paragraph(rng: random.Random, words: list[str], weights: list[float]) -> str:
    return " ".join(_sentence(rng, words, weights) for _ in range(rng.randint(3, 8)))


def _title(rng: random.Random, topics: tuple[str, ...]) -> str:
    x, y, z = rng.sample(topics, 3)
    adjective = rng.choice(_ADJECTIVES)
    article = "An" if adjective[0] in "aeiou" else "A"
    text = rng.choice(_TITLE_FORMS).format(A=f"{article} {adjective}", x=x, y=y, z=z)
    return text[0].upper() + text[1:]


def _full_text(
    rng: random.Random, title: str, abstract: str, words: list[str], weights: list[float], *, target_bytes: int
) -> str:
    parts = [title, "", "Abstract", "", abstract]
    size = sum(len(p) for p in parts)
    chapter = 0
    while size < target_bytes:
        chapter += 1
        heading = f"{chapter}. {_SECTIONS[(chapter - 1) % len(_SECTIONS)]}"
        parts += ["", heading]
        for _ in range(rng.randint(4, 12)):
            paragraph = _paragraph(rng, words, weights)
            parts += ["", paragraph]
            size += len(paragraph) + 2
            if size >= target_bytes:
                break
    return "\n".join(parts) + "\n"


def generate_documents(
    count: int, *, seed: int = 0, min_text_kb: int = 20, max_text_kb: int = 300, collection: str = "theses"
) -> Iterator[NewDocument]:
    """Yield ``count`` synthetic theses; the same arguments always give the same documents.

    Full-text sizes are spread log-uniformly between ``min_text_kb`` and ``max_text_kb`` KiB
    (most theses are short, a few are long); years run from 1950 to 2025.

    Raises:
        ValueError: ``count`` is negative or the size bounds are not ``0 < min <= max``.
    """
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    if not 0 < min_text_kb <= max_text_kb:
        raise ValueError(f"text sizes must satisfy 0 < min ({min_text_kb}) <= max ({max_text_kb}) KiB")
    rng = random.Random(seed)
    departments = sorted(DEPARTMENTS)
    for number in range(1, count + 1):
        department = rng.choice(departments)
        degrees, topics = DEPARTMENTS[department]
        words = [*_GLUE, *_ACADEMIC, *topics]
        weights = [8.0] * len(_GLUE) + [2.0] * len(_ACADEMIC) + [3.0] * len(topics)
        title = _title(rng, topics)
        authors = [f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" for _ in range(1 if rng.random() < 0.9 else 2)]
        abstract = " ".join(_sentence(rng, words, weights) for _ in range(rng.randint(4, 8)))
        target = int(1024 * math.exp(rng.uniform(math.log(min_text_kb), math.log(max_text_kb))))
        handle = f"1721.1/{100000 + seed * 1_000_000 + number}"
        yield NewDocument(
            title=title,
            authors=authors,
            department=department,
            degree=rng.choice(degrees),
            year=rng.randint(1950, 2025),
            abstract=abstract,
            full_text=_full_text(rng, title, abstract, words, weights, target_bytes=target),
            handle=handle,
            uri=f"https://dspace.mit.edu/handle/{handle}",
            collection=collection,
        )
