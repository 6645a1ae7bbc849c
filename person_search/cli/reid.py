"""``person-search reid eval``: re-id Rank-1/5/10 and mAP on a Market-1501-style folder.

Exit codes: 0 done; 2 bad input (missing folder, names outside the layout, missing or
unreadable weights, bad --set), one line on stderr.
"""

from __future__ import annotations

import sys

from person_search.cli.common import parse_sets, print_json


def cmd_reid_eval(a) -> int:
    """Encode query/ and bounding_box_test/ with the re-id model and print the standard metrics."""
    from person_search.core.config import ConfigError, ReidConfig, section_from_dict
    from person_search.core.reid.encoder import ReidEncoder
    from person_search.core.reid.market import ReidDataError, evaluate_market, read_market
    try:
        values = {k.split(".", 1)[1]: v for k, v in parse_sets(a.set).items() if k.startswith("reid.")}
        bad = [k for k in parse_sets(a.set) if not k.startswith("reid.")]
        if bad:
            raise ConfigError(f"--set: only reid.* keys apply here, not {', '.join(bad)}")
        for key in ("model", "backend", "batch_size", "threads", "device"):
            if getattr(a, key, None) not in (None, ""):
                values[key] = getattr(a, key)
        cfg = section_from_dict(ReidConfig, values, "reid")
        cfg.validate()
        read_market(a.data)  # a bad folder is reported before the model loads
        encoder = ReidEncoder(cfg)
        res = evaluate_market(a.data, encoder.encode, batch=cfg.batch_size)
    except (ConfigError, ReidDataError) as exc:  # ReidUnavailable is a ConfigError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res["model_id"] = encoder.model_id
    res["backend"] = encoder.describe().get("backend")
    if a.json:
        print_json(res)
        return 0
    print(f"{a.data}: {res['query_images']} query x {res['gallery_images']} gallery images, {res['ids']} query ids, "
          f"{res['junk_left_out']} junk (-1) left out; model {encoder.model_id} ({res['backend']})")
    print(f"evaluated queries {res['queries']}" + (f" ({res['skipped']} without a correct answer in another "
                                                   f"camera, skipped)" if res["skipped"] else ""))
    print(f"Rank-1 {res['rank1']:.4f}  Rank-5 {res['rank5']:.4f}  Rank-10 {res['rank10']:.4f}  mAP {res['mAP']:.4f}")
    return 0


def register(sub) -> None:
    """Add ``reid eval``."""
    sp = sub.add_parser("reid", help="person re-identification: evaluation of the re-id model")
    rs = sp.add_subparsers(dest="reid_cmd", required=True, help="eval")
    ev = rs.add_parser("eval", help="Rank-1/5/10 and mAP on a Market-1501-style folder (standard protocol)")
    ev.add_argument("--data", required=True, metavar="DIR", help="folder with query/ and bounding_box_test/")
    ev.add_argument("--model", help="re-id .onnx or .pth (default: reid.model of the config defaults)")
    ev.add_argument("--backend", help="onnx, torch, openvino, tensorrt (default reid.backend)")
    ev.add_argument("--batch-size", type=int, dest="batch_size", help="crops per forward pass")
    ev.add_argument("--threads", type=int, help="inference threads (0 = the runtime's default)")
    ev.add_argument("--device", help="cpu or cuda (backends torch / tensorrt)")
    ev.add_argument("--set", action="append", default=[], metavar="reid.KEY=VALUE", help="override a reid setting")
    ev.add_argument("--json", action="store_true", help="print the metrics (with the CMC curve) as JSON")
    ev.set_defaults(func=cmd_reid_eval)
