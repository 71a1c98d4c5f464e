"""A real multilingual corpus with a web's unequal shares, from the gettext catalogs a Debian
system carries (/usr/share/locale/*/LC_MESSAGES/*.mo): one record per (catalog, language), the
translations joined by newlines; English from the catalogs' message ids. One catalog in ten (by
hash) is held out whole, in every language (heldout.jsonl: parallel text); of the rest, each
language keeps a share of its catalogs (English all, Georgian 5%).

    python docs/experiments/scripts/2026-12-04-languages-locale.py OUTDIR
"""

import gettext
import glob
import hashlib
import json
import os
import sys

KEEP = {"en": 1.0, "de": 0.5, "ru": 0.3, "ja": 0.2, "el": 0.1, "ka": 0.05}


def draw(name: str) -> float:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 1000 / 1000


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
docs = {}
for path in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo")):
    lang = path.split("/")[4]
    if lang not in KEEP:
        continue
    try:
        with open(path, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog
    except (OSError, UnicodeDecodeError, ValueError):
        continue
    pairs = [(k, v) for k, v in catalog.items() if isinstance(k, str) and k and isinstance(v, str) and v]
    name = os.path.basename(path)
    docs.setdefault(("en", name), "\n".join(k for k, _ in pairs))
    docs[(lang, name)] = "\n".join(v for _, v in pairs)
with open(f"{out}/web.jsonl", "w", encoding="utf-8") as train, open(f"{out}/heldout.jsonl", "w", encoding="utf-8") as held:
    for (lang, name), text in sorted(docs.items()):
        if len(text) <= 200:
            continue
        record = json.dumps({"text": text, "language": lang, "source": name}, ensure_ascii=False) + "\n"
        if int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10 == 0:
            held.write(record)
        elif draw(name) < KEEP[lang]:
            train.write(record)
