"""``person-search data``: generate a dataset (``synth``, ``crowd``) or check one (``check``).

Exit codes: 0 done; 2 bad arguments or an unusable dataset (one line on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

from person_search.lab.data.datasets import FORMATS


def cmd_synth(a) -> int:
    """Generate a CUHK-PEDES-layout dataset of rendered people."""
    from person_search.cli.common import parse_wxh
    from person_search.lab.data.synth import SynthConfig, SynthError, format_stats, generate
    try:
        cfg = SynthConfig(ids=a.ids, images_per_id=a.images_per_id, seed=a.seed, domain=a.domain,
                          size=parse_wxh(a.size, "--size", person=True), val_ids=a.val_ids, test_ids=a.test_ids)
        stats = generate(Path(a.out), cfg, force=a.force)
    except (SynthError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {a.out}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(format_stats(stats, Path(a.out))))
    return 0


def cmd_crowd(a) -> int:
    """Write crops of captioned-crowd outfits (held-out colour pairs in val / test) in the CUHK-PEDES layout."""
    from person_search.demo.crowd import write_crowd_pedes
    out = Path(a.out)
    if (out / "reid_raw.json").exists() and not a.force:
        print(f"error: {out / 'reid_raw.json'} exists (--force replaces it)", file=sys.stderr)
        return 2
    try:
        ann = write_crowd_pedes(out, images_per_id=a.images_per_id, seed=a.seed, pair_seed=a.pair_seed)
    except OSError as exc:
        print(f"error: cannot write {out}: {exc}", file=sys.stderr)
        return 2
    print(ann)
    return 0


def cmd_check(a) -> int:
    """Load a dataset, check every image exists, print its splits."""
    from person_search.lab.data.datasets import DatasetError, load_dataset
    try:
        ds = load_dataset(a.data, a.format)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{ds.annotations} ({a.format})")
    print(ds.summary())
    for name in ("val", "test"):
        if name in ds.splits:
            print(f"chance Rank-1 on {name}: {ds.splits[name].eval_view().chance_rank1():.3f} %")
    return 0


def add_dataset_args(sp) -> None:
    """Add ``--data`` and ``--format`` (shared with ``eval``)."""
    sp.add_argument("--data", required=True, metavar="DIR", help="dataset folder (annotation file + imgs/)")
    sp.add_argument("--format", default="cuhk-pedes", choices=list(FORMATS), help="dataset layout")


def register(sub) -> None:
    """Add ``data synth``, ``data crowd`` and ``data check``."""
    p = sub.add_parser("data", help="generate or check a text-based person search dataset")
    dsub = p.add_subparsers(dest="data_cmd", required=True, help="synth: generate a dataset; check: validate one")

    sp = dsub.add_parser("synth", help="render a generated dataset (CUHK-PEDES layout) a model can learn")
    sp.add_argument("out", help="output folder (reid_raw.json, imgs/, stats.json)")
    sp.add_argument("--ids", type=int, required=True, help="identities in all splits")
    sp.add_argument("--images-per-id", type=int, default=4)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--domain", default="base", choices=["base", "shifted"],
                    help="shifted: other backgrounds and light, new garment colours (domain transfer)")
    sp.add_argument("--size", default="96x192", metavar="WxH",
                    help="image WIDTHxHEIGHT, taller than wide (default 96x192)")
    sp.add_argument("--val-ids", type=int, default=-1, help="val identities (default 10 %%)")
    sp.add_argument("--test-ids", type=int, default=-1, help="test identities (default 10 %%)")
    sp.add_argument("--force", action="store_true", help="replace a dataset already in OUT")
    sp.set_defaults(func=cmd_synth)

    sp = dsub.add_parser("crowd", help="crops of captioned-crowd people (CUHK-PEDES layout; held-out colour pairs "
                                       "in val / test, the ones `sample-video --captions` crowds wear)")
    sp.add_argument("out", help="output folder (reid_raw.json, imgs/)")
    sp.add_argument("--images-per-id", type=int, default=8, help="images per identity (default 8)")
    sp.add_argument("--seed", type=int, default=0, help="renders and captions")
    sp.add_argument("--pair-seed", type=int, default=0, help="the colour-pair split (must match the crowd's)")
    sp.add_argument("--force", action="store_true", help="replace a dataset already in OUT")
    sp.set_defaults(func=cmd_crowd)

    sp = dsub.add_parser("check", help="load a dataset, check its images, print ids / images / captions per split")
    add_dataset_args(sp)
    sp.set_defaults(func=cmd_check)
