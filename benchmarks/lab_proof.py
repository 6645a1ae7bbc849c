"""Proof on these machines (CPU): train a small CLIP from scratch on generated data, controls, LoRA adaptation.

One command generates the two datasets (``person-search data synth``: the base domain and
the shifted one), trains with ``person-search train``, evaluates with ``person-search eval``,
collects every figure into a small results file (``docs/lab_proof.json``: the run record with
commit, arguments, machine and load; per run its metrics, per-query Rank-1 hits, CMC, curves)
and generates ``docs/lab_proof.md`` with ``docs/lab_proof_cmc.png`` and ``docs/lab_proof_loss.png``
whole from that file (``--report-only`` redraws them from it alone). Every step is a
``person-search`` command (printed in the report); a step whose result file exists is skipped,
so a second call only redoes what is missing (a training run cut short continues with
``--resume``). ``--quick`` is a smoke run (a tiny dataset, a few steps, its own folder, results
file and report) that checks the plumbing only.

Runs (``OUT/<name>``), for every seed s of ``--seeds`` (s draws the initial weights, the data order and
the augmentation):

* ``scratch-s<s>``: PS-Small-ViT from random init, full training on the base train split (1,600 ids).
* ``shuffled-s<first>``: the same budget with ``--shuffle-captions`` (control: must stay at chance).
* ``untrained``: random weights, evaluation only (control).
* ``zero-shot-s<s>``: ``scratch-s<s>`` evaluated on the shifted test split.
* ``shifted-<full|lora>-lr<lr>-s<s>``: ``scratch-s<s>`` fine-tuned on the shifted train split, everything
  or LoRA adapters, the same number of steps and the same learning-rate grid (``ADAPT["lr_grid"]``) for
  both; each method's learning rate is picked per seed by the best validation Rank-1, then read on test.

Claims with a threshold carry a 95 % bootstrap interval over test identities and seeds; a target
whose interval straddles its line is reported "not resolved". Figures from generated data: never
compare them with CUHK-PEDES numbers.

    python -m benchmarks.lab_proof [--out runs/lab_proof] [--seeds 0 1 2] [--jobs 2] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from benchmarks.common import ROOT, new_record

ARCH = "PS-Small-ViT"
MAIN = {  # the from-scratch recipe (and the shuffled control's): the one that met the target on 1,600 ids
    "size": "32x64", "steps": 1400, "batch": 64, "lr": 5e-4, "warmup": 80, "loss": "infonce", "logit_scale": 14.3,
}
ADAPT = {"steps": 200, "warmup": 20, "batch": 32, "lr_grid": (1e-4, 3e-4, 1e-3, 3e-3), "lora_rank": 16,
         "lora_alpha": 32}
DATA = {"ids": 1600, "val_ids": 50, "test_ids": 50, "shifted_ids": 500, "images_per_id": 4, "size": "48x96",
        "seed_base": 0, "seed_shifted": 1}
QUICK = {"ids": 40, "val_ids": 4, "test_ids": 4, "shifted_ids": 40, "images_per_id": 2, "steps": 3, "batch": 8,
         "adapt_steps": 2, "lr_grid": (1e-4, 1e-3), "eval_every": 2}
BOOTSTRAP = 2000
DEFAULT_SEEDS = (0, 1, 2)
TARGET_R1, TARGET_CHANCE_X, TARGET_RECOVERY = 50.0, 20.0, 90.0


def recovery(r1_zero: float, r1_full: float, r1_lora: float) -> Optional[float]:
    """Return the share (%) of the full fine-tune's gain over zero-shot that LoRA recovers.

    ``(R1_lora - R1_zero) / (R1_full - R1_zero)``; None when the full fine-tune gained nothing
    (the share is undefined then).
    """
    gain = r1_full - r1_zero
    if gain <= 0:
        return None
    return 100.0 * (r1_lora - r1_zero) / gain


def mean_spread(values: Sequence[float]) -> Dict[str, float]:
    """Return mean, sample standard deviation (0 for one value), min and max."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("no values")
    mean = sum(vals) / len(vals)
    std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(vals), "max": max(vals), "n": len(vals)}


@dataclass
class Step:
    """One ``person-search`` command and the file that says it is done."""

    name: str
    argv: List[str]  # person-search arguments
    done: Path  # exists = finished (skip)
    after: List[str] = field(default_factory=list)  # names of steps that must finish first
    resume: Optional[Path] = None  # a training run folder: continue it with --resume when its state exists

    def is_done(self) -> bool:
        """Return True when the result file exists."""
        return self.done.exists()

    def command(self) -> List[str]:
        """Return the arguments to run now (with --resume when a cut-off run can continue)."""
        if self.resume is not None and (self.resume / "state.pt").is_file() and not self.is_done():
            return self.argv + ["--resume"]
        return list(self.argv)

    def shell(self) -> str:
        """Return the command as a user would type it."""
        return "person-search " + " ".join(shlex.quote(a.replace(f"{ROOT}/", "")) for a in self.argv)


def _train(name: str, out: Path, data: Path, steps: int, batch: int, lr: float, threads: int, *, seed: int = 0,
           weights: str = "", extra: Sequence[str] = (), after: Sequence[str] = (), size: str = MAIN["size"],
           loss: str = MAIN["loss"], logit_scale: float = MAIN["logit_scale"], warmup: int = MAIN["warmup"],
           eval_every: int = 50) -> Step:
    run = out / name
    argv = ["train", "--data", str(data), "--arch", ARCH, "--image-size", size, "--weights", weights,
            "--out", str(run), "--max-steps", str(steps), "--batch-size", str(batch), "--lr", f"{lr:g}",
            "--warmup-steps", str(warmup), "--loss", loss, "--logit-scale", f"{logit_scale:g}",
            "--threads", str(threads), "--eval-every", str(eval_every), "--seed", str(seed), "--learn-logit-scale",
            *extra]
    return Step(f"train {name}", argv, run / "model.json", list(after), resume=run)


def _eval(name: str, out: Path, data: Path, threads: int, *, weights: str = "", after: Sequence[str] = ()) -> Step:
    res = out / f"{name}.eval.json"
    src = ["--weights", weights] if weights else ["--random-weights", "--arch", ARCH, "--image-size", MAIN["size"]]
    argv = ["eval", "--data", str(data), "--split", "test", *src, "--threads", str(threads), "--json", str(res),
            "--save-scores", str(out / f"{name}.scores.npz")]
    return Step(f"eval {name}", argv, res, list(after))


def adapt_name(mode: str, lr: float, seed: int) -> str:
    """Return the run name of one adaptation: method, learning rate, seed."""
    return f"shifted-{mode}-lr{lr:g}-s{seed}"


def plan(out: Path, *, seeds: Sequence[int] = DEFAULT_SEEDS, threads: int = 1, quick: bool = False,
         eval_every: Optional[int] = None) -> List[Step]:
    """Return every step of the proof in order (data, training, evaluation)."""
    base, shifted = out / "data-base", out / "data-shifted"
    d = {**DATA, **{k: QUICK[k] for k in ("ids", "val_ids", "test_ids", "shifted_ids", "images_per_id")}} \
        if quick else DATA
    steps_main, batch = (QUICK["steps"], QUICK["batch"]) if quick else (MAIN["steps"], MAIN["batch"])
    steps_adapt, adapt_batch = (QUICK["adapt_steps"], QUICK["batch"]) if quick else (ADAPT["steps"], ADAPT["batch"])
    grid = QUICK["lr_grid"] if quick else ADAPT["lr_grid"]
    every = eval_every or (QUICK["eval_every"] if quick else 200)
    split = ["--images-per-id", str(d["images_per_id"]), "--size", d["size"], "--val-ids", str(d["val_ids"]),
             "--test-ids", str(d["test_ids"])]
    out_steps = [
        Step("data base", ["data", "synth", str(base), "--ids", str(d["ids"]), *split, "--seed",
                           str(d["seed_base"])], base / "stats.json"),
        Step("data shifted", ["data", "synth", str(shifted), "--ids", str(d["shifted_ids"]), *split, "--seed",
                              str(d["seed_shifted"]), "--domain", "shifted"], shifted / "stats.json"),
    ]
    for seed in seeds:
        name = f"scratch-s{seed}"
        out_steps += [_train(name, out, base, steps_main, batch, MAIN["lr"], threads, seed=seed, after=["data base"],
                             eval_every=every),
                      _eval(name, out, base, threads, weights=str(out / name), after=[f"train {name}"])]
    shuffled = f"shuffled-s{seeds[0]}"
    out_steps += [
        _train(shuffled, out, base, steps_main, batch, MAIN["lr"], threads, seed=seeds[0],
               extra=["--shuffle-captions"], after=["data base"], eval_every=every),
        _eval(shuffled, out, base, threads, weights=str(out / shuffled), after=[f"train {shuffled}"]),
        _eval("untrained", out, base, threads, after=["data base"]),
    ]
    for seed in seeds:
        start = f"scratch-s{seed}"
        out_steps.append(_eval(f"zero-shot-s{seed}", out, shifted, threads, weights=str(out / start),
                               after=["data shifted", f"train {start}"]))
        for mode, extra in (("full", []), ("lora", ["--mode", "lora", "--lora-rank", str(ADAPT["lora_rank"]),
                                                    "--lora-alpha", str(ADAPT["lora_alpha"])])):
            for lr in grid:  # the same grid, the same selection rule for both methods
                name = adapt_name(mode, lr, seed)
                out_steps += [_train(name, out, shifted, steps_adapt, adapt_batch, lr, threads, seed=seed,
                                     weights=str(out / start / "best.safetensors"), extra=extra,
                                     warmup=min(ADAPT["warmup"], steps_adapt), eval_every=every,
                                     after=["data shifted", f"train {start}"]),
                              _eval(name, out, shifted, threads, weights=str(out / name), after=[f"train {name}"])]
    return out_steps


def _launch(step: Step, logs: Path) -> subprocess.Popen:
    code = "import sys; from person_search.cli import main; sys.exit(main(sys.argv[1:]))"
    log = open(logs / (step.name.replace(" ", "_") + ".log"), "ab")  # noqa: SIM115 - closed by the caller
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", code, *step.command()], stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT)
    proc.log, proc.t0 = log, t0  # type: ignore[attr-defined]
    return proc


def run_steps(steps: List[Step], out: Path, *, jobs: int = 2) -> Dict[str, float]:
    """Run the steps not done yet, ``jobs`` at a time, in dependency order; return {name: wall s}.

    The wall time of every finished step is also kept in ``OUT/walltimes.json`` (a skipped step
    keeps the time of the call that ran it). Raises RuntimeError when a step fails.
    """
    from tqdm import tqdm

    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    times_file = out / "walltimes.json"
    walls: Dict[str, float] = json.loads(times_file.read_text()) if times_file.is_file() else {}
    pending = [s for s in steps if not s.is_done()]
    done = {s.name for s in steps if s.is_done()}
    running: Dict[str, subprocess.Popen] = {}
    bar = tqdm(total=len(steps), initial=len(done), unit="step", desc="lab proof")
    while pending or running:
        for s in list(pending):
            if len(running) < jobs and all(d in done for d in s.after):
                bar.write(f"start: {s.shell()}")
                running[s.name] = _launch(s, logs)
                pending.remove(s)
        time.sleep(1.0)
        for name, proc in list(running.items()):
            if proc.poll() is None:
                continue
            proc.log.close()
            del running[name]
            if proc.returncode != 0:
                for other in running.values():
                    other.terminate()
                raise RuntimeError(f"{name} failed (exit {proc.returncode}); see {logs}")
            walls[name] = round(time.time() - proc.t0, 1)
            times_file.write_text(json.dumps(walls, indent=2) + "\n")
            done.add(name)
            bar.update(1)
            bar.write(f"done: {name} ({walls[name]:.0f} s)")
    bar.close()
    return walls


def _metrics_rows(run: Path) -> List[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def median_step_s(run: Path) -> Optional[float]:
    """Return the median training step time (s) of a run's metrics.jsonl, or None."""
    t = sorted(r["step_time_s"] for r in _metrics_rows(run) if r.get("kind") == "train")
    return t[len(t) // 2] if t else None


# ---- results file --------------------------------------------------------------------------------------------

def _hits(scores: Path) -> Tuple[List[int], List[int], List[float]]:
    """Return (per-query Rank-1 hit 0/1, query person ids, CMC@1..50 %) of a saved score file."""
    from person_search.lab.eval.metrics import retrieval_metrics

    z = np.load(scores)
    sim, qp, gp = z["sim"], z["query_pids"], z["gallery_pids"]
    hit = (gp[np.argmax(sim, axis=1)] == qp).astype(int)
    cmc = retrieval_metrics(sim, qp, gp)["cmc"][:50]
    return hit.tolist(), qp.astype(int).tolist(), [round(float(v), 3) for v in cmc]


def collect(out: Path, steps: List[Step], walls: Dict[str, float], record: dict, *, quick: bool) -> dict:
    """Gather every figure the report shows from the run folder into one JSON-ready dict."""
    from person_search.lab.eval.metrics import chance_cmc

    runs: Dict[str, dict] = {}
    names = sorted({s.name.split(" ", 1)[1] for s in steps if s.name.startswith(("train ", "eval "))})
    for name in names:
        r: dict = {}
        ev = out / f"{name}.eval.json"
        if ev.is_file():
            e = json.loads(ev.read_text())
            r["test"] = {k: round(float(v), 2) for k, v in e["t2i"].items() if k != "cmc"}
            if "t2i-unseen-pairs" in e:
                r["test_unseen_pairs"] = {k: round(float(v), 2) for k, v in e["t2i-unseen-pairs"].items()
                                          if k != "cmc"}
            r["queries"] = e.get("queries")
        sc = out / f"{name}.scores.npz"
        if sc.is_file():
            r["hits"], r["query_pids"], r["cmc"] = _hits(sc)
        info = out / name / "model.json"
        if info.is_file():
            i = json.loads(info.read_text())
            best = i.get("best") or {}
            r["train"] = {"steps": i.get("steps"), "best_step": best.get("step"),
                          "val_r1": (best.get("metrics") or {}).get("R1"),
                          "trainable": i.get("trainable_params"), "total": i.get("total_params"),
                          "median_step_s": median_step_s(out / name), "wall_s": walls.get(f"train {name}")}
            rows = _metrics_rows(out / name)
            every = max(1, len([x for x in rows if x.get("kind") == "train"]) // 200)
            r["curves"] = {"loss": [[x["step"], round(x["loss"], 4)] for x in rows if x.get("kind") == "train"][
                ::every], "val_r1": [[x["step"], x["R1"]] for x in rows if x.get("kind") == "eval"]}
        if r:
            runs[name] = r
    stats = {}
    for key in ("base", "shifted"):
        f = out / f"data-{key}" / "stats.json"
        if f.is_file():
            st = json.loads(f.read_text())
            stats[key] = {"ids": st["ids"], "chance_rank1_test": st["chance_rank1"]["test"], "size": st["size"],
                          "images_per_id": st["images_per_id"], "seed": st["seed"], "domain": st["domain"]}
            ref = "untrained" if key == "base" else min((n for n in runs if n.startswith("zero-shot")), default="")
            sc = out / f"{ref}.scores.npz"
            if ref and sc.is_file():
                z = np.load(sc)
                stats[key]["chance_cmc"] = [round(float(v), 3) for v in chance_cmc(z["query_pids"],
                                                                                   z["gallery_pids"])[:50]]
    return {"record": record, "quick": quick, "commands": [[s.name, s.shell()] for s in steps], "walls": walls,
            "data": stats, "runs": runs}


# ---- statistics ------------------------------------------------------------------------------------------------

def bootstrap_r1(hits: Sequence[Sequence[int]], query_pids: Sequence[int], *, n: int = BOOTSTRAP, seed: int = 0,
                 seeds_too: bool = True) -> np.ndarray:
    """Return ``n`` bootstrap replicates of the seed-mean Rank-1 (%) of ``hits`` (one 0/1 row per seed).

    Each replicate draws the test identities with replacement (a query counts as often as its identity is
    drawn) and, with ``seeds_too``, the seeds with replacement; all rows share the test queries.
    """
    h = np.asarray(hits, dtype=float)
    h = h[None, :] if h.ndim == 1 else h
    ids, inv = np.unique(np.asarray(query_pids), return_inverse=True)
    per_id_hits = np.stack([np.bincount(inv, weights=row, minlength=len(ids)) for row in h])  # seeds x ids
    per_id_n = np.bincount(inv, minlength=len(ids)).astype(float)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=n).astype(float)  # n x ids
    r1 = 100 * (w @ per_id_hits.T) / (w @ per_id_n)[:, None]  # n x seeds
    if seeds_too and h.shape[0] > 1:
        pick = rng.integers(0, h.shape[0], size=(n, h.shape[0]))
        return np.take_along_axis(r1, pick, axis=1).mean(axis=1)
    return r1.mean(axis=1)


def bootstrap_recovery(zero: Sequence[Sequence[int]], full: Sequence[Sequence[int]], lora: Sequence[Sequence[int]],
                       query_pids: Sequence[int], *, n: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """Return bootstrap replicates of the recovery (%) = mean(lora - zero) / mean(full - zero) over seeds.

    The same identity and seed draws for the three rows of a seed (paired); NaN where the full fine-tune gained
    nothing in a replicate (the share is undefined there).
    """
    z, f, lo = (np.atleast_2d(np.asarray(x, dtype=float)) for x in (zero, full, lora))
    ids, inv = np.unique(np.asarray(query_pids), return_inverse=True)
    per = [np.stack([np.bincount(inv, weights=row, minlength=len(ids)) for row in m]) for m in (z, f, lo)]
    per_n = np.bincount(inv, minlength=len(ids)).astype(float)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=n).astype(float)
    r = [100 * (w @ m.T) / (w @ per_n)[:, None] for m in per]  # each n x seeds
    pick = rng.integers(0, z.shape[0], size=(n, z.shape[0]))
    zz, ff, ll = (np.take_along_axis(x, pick, axis=1).mean(axis=1) for x in r)
    gain = ff - zz
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gain > 0, 100 * (ll - zz) / gain, np.nan)


def interval(reps: np.ndarray) -> Optional[Tuple[float, float]]:
    """Return the 2.5 / 97.5 percentiles of the finite replicates (None when under 95 % of them are finite)."""
    ok = reps[np.isfinite(reps)]
    if len(ok) < 0.95 * len(reps) or not len(ok):
        return None
    return float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))


def verdict(iv: Optional[Tuple[float, float]], line: float) -> str:
    """Return met (the whole interval at or above ``line``), missed (all below), or not resolved (it straddles)."""
    if iv is None:
        return "not resolved (undefined in too many bootstrap replicates)"
    if iv[0] >= line:
        return "met"
    if iv[1] < line:
        return "missed"
    return "not resolved"


def select_lr(runs: dict, mode: str, seed: int, grid: Sequence[float]) -> Optional[str]:
    """Return the adaptation run of ``mode`` and ``seed`` with the best validation Rank-1 (ties: lower lr)."""
    done = [(runs[n]["train"]["val_r1"], -lr, n) for lr in grid for n in [adapt_name(mode, lr, seed)]
            if n in runs and (runs[n].get("train") or {}).get("val_r1") is not None and "hits" in runs[n]]
    return max(done)[2] if done else None


# ---- report ----------------------------------------------------------------------------------------------------

def _row(name: str, m: Optional[dict]) -> str:
    if not m:
        return f"| {name} | not run | | | | |"
    return f"| {name} | " + " | ".join(f"{m[k]:.2f}" for k in ("R1", "R5", "R10", "mAP", "mINP")) + " |"


def _figure(path: Path, panels) -> str:
    """Draw ``panels`` [(draw(ax), xlabel, ylabel, title, ylim or None)] side by side into ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), dpi=100)
    for ax, (draw, xlabel, ylabel, title, ylim) in zip(axes, panels):
        draw(ax)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title} (generated data)")
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _plots(res: dict, doc_dir: Path, prefix: str, base: List[str], shift: List[str]) -> List[str]:
    runs = res["runs"]

    def cmc(names, key):
        def draw(ax):
            for n in names:
                if "cmc" in runs.get(n, {}):
                    c = runs[n]["cmc"]
                    ax.plot(np.arange(1, len(c) + 1), c, marker=".", label=n)
            chance = res["data"].get(key, {}).get("chance_cmc")
            if chance:
                ax.plot(np.arange(1, len(chance) + 1), chance, "k--", lw=1, label=f"chance (R1 {chance[0]:.2f} %)")
        return draw

    def curve(kind):
        def draw(ax):
            for n in base + shift:
                pts = runs.get(n, {}).get("curves", {}).get(kind)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if kind == "val_r1" else "-", lw=1,
                            label=n)
        return draw

    return [_figure(doc_dir / f"{prefix}_cmc.png",
                    [(cmc(base, "base"), "rank k", "CMC@k (%)", "base test split", (0, 100)),
                     (cmc(shift, "shifted"), "rank k", "CMC@k (%)", "shifted test split", (0, 100))]),
            _figure(doc_dir / f"{prefix}_loss.png",
                    [(curve("loss"), "step", "training loss (InfoNCE)", "training loss", None),
                     (curve("val_r1"), "step", "val Rank-1 (%)", "validation Rank-1", (0, 100))])]


def render(res: dict, doc: Path) -> str:
    """Write the markdown report (and its PNGs next to it) from the results ``res`` alone; return its text."""
    rec, runs, data = res["record"], res["runs"], res["data"]
    args = rec["args"]
    seeds, quick = list(args["seeds"]), bool(res.get("quick"))
    grid = QUICK["lr_grid"] if quick else ADAPT["lr_grid"]
    scratch = [f"scratch-s{s}" for s in seeds]
    shuffled = f"shuffled-s{seeds[0]}"
    doc.parent.mkdir(parents=True, exist_ok=True)
    sel = {(m, s): select_lr(runs, m, s, grid) for m in ("full", "lora") for s in seeds}
    pngs = _plots(res, doc.parent, doc.stem, scratch + [shuffled, "untrained"],
                  [f"zero-shot-s{seeds[0]}"] + [n for n in (sel[("full", seeds[0])], sel[("lora", seeds[0])]) if n])
    head = "| run | R1 | R5 | R10 | mAP | mINP |\n|---|---:|---:|---:|---:|---:|"
    b, sh = data.get("base", {}), data.get("shifted", {})
    chance = b.get("chance_rank1_test")
    cmd = (f"python -m benchmarks.lab_proof{' --quick' if quick else ''} --out {args['out']} --seeds "
           f"{' '.join(map(str, seeds))} --jobs {args['jobs']} --threads {args['threads']}"
           + (f" --eval-every {args['eval_every']}" if args.get("eval_every") else ""))
    lines = ["# Proof on generated data (CPU)", "",
             f"Generated whole by `{cmd}` from its results file `{args['results']}` (`--report-only` redraws this "
             f"page from that file alone). Run record: commit {rec['commit'][:12]}, {rec['machine']['cpu']}, "
             f"{rec['machine']['cores']} cores, 1-minute load average {rec['load1_start']} at the start, started "
             f"{rec['started']}. Every figure below comes from `person-search data synth` images: **generated "
             "data, not comparable with CUHK-PEDES / ICFG-PEDES / RSTPReid figures**.", ""]
    if b:
        lines += [f"Data: base domain {b['ids']['train']} / {b['ids']['val']} / {b['ids']['test']} train / val / "
                  f"test identities x {b['images_per_id']} images, {b['size'][1]}x{b['size'][0]} px (WxH), "
                  "two captions "
                  f"per image, seed {b['seed']}; shifted domain {sh.get('ids', {}).get('train', '?')} / "
                  f"{sh.get('ids', {}).get('val', '?')} / {sh.get('ids', {}).get('test', '?')}, seed "
                  f"{sh.get('seed', '?')}. Test split: identity-disjoint, every identity an attribute combination "
                  f"never seen in training; chance Rank-1 {chance:.2f} % (base), "
                  f"{sh.get('chance_rank1_test', float('nan')):.2f} % (shifted).", ""]
    main = {**MAIN, **({"steps": QUICK["steps"], "batch": QUICK["batch"]} if quick else {})}
    adapt_steps = QUICK["adapt_steps"] if quick else ADAPT["steps"]
    adapt_batch = QUICK["batch"] if quick else ADAPT["batch"]
    every = args.get("eval_every") or (QUICK["eval_every"] if quick else 200)
    lines += [f"Model: `{ARCH}` (`person_search/model_configs/{ARCH}.json`: ViT image tower, 3 blocks, width 128, "
              "patch 8 at 32x64 WxH (8x4 tokens); text tower 2 blocks, width 128, context 56; embedding 128), random "
              f"init drawn with the seed. From scratch: {main['steps']} steps, batch {main['batch']}, AdamW lr "
              f"{main['lr']:g} (weight decay 0.02), {main['warmup']} warm-up steps then cosine, symmetric InfoNCE "
              f"with a learnt logit scale starting at {main['logit_scale']:g}, fp32 on the CPU, {args['threads']} "
              f"torch thread(s) per run, {args['jobs']} run(s) at once; validation every {every} steps; seeds "
              f"{', '.join(map(str, seeds))} (each draws the initial weights, the data order and the augmentation). "
              f"Shifted-domain adaptation from each seed's best checkpoint (best val R1): {adapt_steps} steps of "
              f"batch {adapt_batch} each, full fine-tune and LoRA (rank {ADAPT['lora_rank']}, alpha "
              f"{ADAPT['lora_alpha']}, on q/k/v, out_proj, c_fc and c_proj of both towers, with `visual.proj` and "
              f"`text_projection` trainable) each tried at the same learning rates "
              f"{', '.join(f'{v:g}' for v in grid)} and read on test at the one with the best validation Rank-1; "
              f"{min(ADAPT['warmup'], adapt_steps)} warm-up steps. Intervals: 2.5-97.5 percentiles of "
              f"{BOOTSTRAP:,} bootstrap replicates drawing test identities and seeds with replacement.", ""]
    lines += ["## From scratch and controls (base test split)", "", head]
    for n in scratch + [shuffled, "untrained"]:
        lines.append(_row(n, runs.get(n, {}).get("test")))
        if runs.get(n, {}).get("test_unseen_pairs"):
            lines.append(_row(f"{n}: t2i-unseen-pairs", runs[n]["test_unseen_pairs"]))
    lines += ["", "| run | steps | s/step (median) | train wall s | best step (val R1) | trainable / total params |",
              "|---|---:|---:|---:|---:|---|"]
    for n in scratch + [shuffled] + sorted(v for v in sel.values() if v):
        t = runs.get(n, {}).get("train")
        if not t:
            continue
        step_s = "n/a" if t["median_step_s"] is None else f"{t['median_step_s']:.2f}"
        wall = "n/a" if t["wall_s"] is None else f"{t['wall_s']:.0f}"
        best = f"{t['best_step']} ({t['val_r1']:.2f})" if t.get("best_step") is not None else "n/a"
        share = 100 * t["trainable"] / t["total"] if t.get("total") else float("nan")
        lines.append(f"| {n} | {t['steps']} | {step_s} | {wall} | {best} | {t['trainable']:,} / {t['total']:,} "
                     f"({share:.2f} %) |")
    lines += ["", f"Train wall s: the whole `person-search train` command (start-up, validation every {every} steps, "
              "checkpoints); s/step: the median optimizer step from `metrics.jsonl`; the test figures are those "
              "of the best checkpoint (highest val R1), `RUN/best.safetensors`."]
    done = [n for n in scratch if "hits" in runs.get(n, {})]
    if done and chance:
        r1s = [runs[n]["test"]["R1"] for n in done]
        ms = mean_spread(r1s)
        iv = interval(bootstrap_r1([runs[n]["hits"] for n in done], runs[done[0]]["query_pids"]))
        ivt = f"[{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "n/a"
        lines += ["", f"From-scratch Rank-1 over {ms['n']} seed(s): mean {ms['mean']:.2f} % (per seed "
                  f"{' / '.join(f'{v:.2f}' for v in r1s)}; sd {ms['std']:.2f}), 95 % bootstrap interval {ivt}; "
                  f"chance {chance:.2f} %, so {ms['mean'] / chance:.1f}x chance. Targets: R1 >= {TARGET_R1:g} % "
                  f"**{verdict(iv, TARGET_R1)}**; >= {TARGET_CHANCE_X:g}x chance ({TARGET_CHANCE_X * chance:.2f} %) "
                  f"**{verdict(iv, TARGET_CHANCE_X * chance)}**"
                  + (" (one seed: the interval covers test identities only)" if ms["n"] == 1 else "") + "."]
    lines += ["", "## LoRA domain adaptation (shifted test split)", "",
              "| seed | method | learning rate picked (val R1 per lr) | test R1 | R5 | R10 | mAP | mINP |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for s in seeds:
        z = runs.get(f"zero-shot-s{s}", {}).get("test")
        lines.append(f"| {s} | zero-shot (no adaptation) | - | " + (" | ".join(
            f"{z[k]:.2f}" for k in ("R1", "R5", "R10", "mAP", "mINP")) if z else "not run | | | |") + " |")
        for m in ("full", "lora"):
            tried = ", ".join(f"{lr:g}: {runs[n]['train']['val_r1']:.1f}" for lr in grid
                              for n in [adapt_name(m, lr, s)] if (runs.get(n, {}).get("train") or {}).get("val_r1")
                              is not None) or "none run"
            n = sel[(m, s)]
            t = runs.get(n, {}).get("test") if n else None
            lines.append(f"| {s} | {m} | {n.split('-lr')[1].split('-s')[0] if n else 'n/a'} ({tried}) | " + (
                " | ".join(f"{t[k]:.2f}" for k in ("R1", "R5", "R10", "mAP", "mINP")) if t else
                "not run | | | |") + " |")
    ready = [s for s in seeds if all("hits" in runs.get(n or "", {}) for n in
                                     (f"zero-shot-s{s}", sel[("full", s)], sel[("lora", s)]))]
    if ready:
        zs, fs, ls = ([runs[n]["hits"] for n in names] for names in (
            [f"zero-shot-s{s}" for s in ready], [sel[("full", s)] for s in ready], [sel[("lora", s)] for s in ready]))
        point = [recovery(runs[f"zero-shot-s{s}"]["test"]["R1"], runs[sel[("full", s)]]["test"]["R1"],
                          runs[sel[("lora", s)]]["test"]["R1"]) for s in ready]
        mean_gain = np.mean([runs[sel[("full", s)]]["test"]["R1"] - runs[f"zero-shot-s{s}"]["test"]["R1"]
                             for s in ready])
        mean_lora = np.mean([runs[sel[("lora", s)]]["test"]["R1"] - runs[f"zero-shot-s{s}"]["test"]["R1"]
                             for s in ready])
        rec_mean = 100 * mean_lora / mean_gain if mean_gain > 0 else None
        iv = interval(bootstrap_recovery(zs, fs, ls, runs[f"zero-shot-s{ready[0]}"]["query_pids"]))
        ivt = f"[{iv[0]:.1f}, {iv[1]:.1f}] %" if iv else "undefined in too many replicates"
        per = " / ".join("undefined" if v is None else f"{v:.1f}" for v in point)
        lines += ["", f"Recovery = mean(R1_lora - R1_zero) / mean(R1_full - R1_zero) over {len(ready)} seed(s) = "
                  + ("undefined (the full fine-tune did not improve on zero-shot)" if rec_mean is None
                     else f"{rec_mean:.1f} %") + f" (per seed {per} %); 95 % bootstrap interval {ivt}. Target >= "
                  f"{TARGET_RECOVERY:g} %: **{verdict(iv, TARGET_RECOVERY)}**. Both methods had the same "
                  "learning-rate grid and the same selection rule (best validation Rank-1)."]
    lines += ["", f"![CMC curves]({pngs[0]})", "", f"![training loss and val R1]({pngs[1]})", "",
              "## Commands", "", "```bash"]
    walls = res.get("walls", {})
    lines += [c + (f"   # {walls[n]:.0f} s" if n in walls else "") for n, c in res["commands"]]
    lines += ["```", ""]
    text = "\n".join(lines)
    doc.write_text(text, encoding="utf-8")
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the missing steps, collect the results file, then write the report from it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="runs folder (default runs/lab_proof, runs/lab_proof_quick)")
    p.add_argument("--doc", default=None, help="report (default docs/lab_proof.md; --quick: OUT/lab_proof.md)")
    p.add_argument("--results", default=None,
                   help="results file the report is made from (default: the report's name with .json)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                   help="seeds (each draws the initial weights, the data order and the augmentation)")
    p.add_argument("--jobs", type=int, default=2, help="commands at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per command")
    p.add_argument("--eval-every", type=int, default=None, help="validation interval in steps (default 200)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny data, a few steps")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the results file alone (no run folder needed)")
    a = p.parse_args(argv)
    out = Path(a.out or ("runs/lab_proof_quick" if a.quick else "runs/lab_proof")).resolve()
    doc = Path(a.doc) if a.doc else (out / "lab_proof.md" if a.quick else ROOT / "docs" / "lab_proof.md")
    results = Path(a.results) if a.results else doc.with_suffix(".json")
    if a.report_only:
        if not results.is_file():
            print(f"error: {results} does not exist: run the proof first (without --report-only)", file=sys.stderr)
            return 2
        print(render(json.loads(results.read_text()), doc))
        print(f"report: {doc} (from {results})")
        return 0
    rel = str(out).replace(f"{ROOT}/", "")
    args = {"out": rel, "seeds": a.seeds, "jobs": a.jobs, "threads": a.threads, "eval_every": a.eval_every,
            "quick": a.quick, "results": str(results.resolve()).replace(f"{ROOT}/", "")}
    record = new_record(args, "lab_proof")
    steps = plan(out, seeds=a.seeds, threads=a.threads, quick=a.quick, eval_every=a.eval_every)
    out.mkdir(parents=True, exist_ok=True)
    try:
        walls = run_steps(steps, out, jobs=a.jobs)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    res = collect(out, steps, walls, record, quick=a.quick)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(res, separators=(",", ":")) + "\n")
    print(render(res, doc))
    print(f"report: {doc}; results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
