"""Training: losses, modes, schedule, run folder, resume, controls and the CLI (tiny CLIP, CPU)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from trainkit import Outfits, config, rank1

from person_search.cli import main as cli_main
from person_search.core.config import ConfigError
from person_search.lab.train import TrainError, train
from person_search.lab.train.checkpoint import load_weights
from person_search.lab.train.losses import infonce, matching_loss, sdm
from person_search.lab.train.loop import param_groups, resolve_device, shuffle_captions, warmup_cosine
from person_search.lab.train.model import build_trainable


def _dataset_loss(cfg, weights_file=None) -> float:
    """InfoNCE + SDM of the whole toy set through a fresh model (optionally with a plain checkpoint)."""
    t = build_trainable(dataclasses.replace(cfg, mode="full"))  # the plain layout every run's last.safetensors has
    if weights_file is not None:
        load_weights(t.clip, weights_file)
    t.clip.eval()
    data = Outfits()
    images = torch.stack([x for x, _, _ in data])
    labels = torch.tensor([y for _, _, y in data])
    with torch.no_grad():
        img = t.clip.encode_image(images)
        txt = t.clip.encode_text(t.tokenizer([c for _, c, _ in data]))
        return float(matching_loss("infonce+sdm", img, txt, labels, t.clip.logit_scale.exp()))


# ---- losses ---------------------------------------------------------------------------------

def test_infonce_is_small_for_matching_pairs_and_large_for_swapped_ones():
    feats = torch.eye(4)
    assert float(infonce(feats, feats, 50.0)) < 1e-6
    assert float(infonce(feats, feats[[1, 0, 3, 2]], 50.0)) > 40.0
    # symmetric: both directions count
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    assert math.isclose(float(infonce(a, b, 10.0)), float(infonce(b, a, 10.0)), rel_tol=1e-6)


def test_sdm_matches_irra_formula_and_accepts_every_positive_of_an_identity():
    torch.manual_seed(0)
    img, txt = torch.randn(6, 8), torch.randn(6, 8)
    pid = torch.tensor([0, 0, 1, 2, 2, 2])
    # IRRA's compute_sdm written out (broadcast form of the label normalisation)
    labels = (pid.view(-1, 1) - pid.view(1, -1) == 0).float()
    q = labels / labels.sum(dim=1)
    t2i = 20.0 * F.normalize(txt, dim=1) @ F.normalize(img, dim=1).t()
    ref = 0.0
    for logits in (t2i.t(), t2i):
        p = F.softmax(logits, dim=1)
        ref = ref + (p * (F.log_softmax(logits, dim=1) - torch.log(q + 1e-8))).sum(1).mean()
    assert math.isclose(float(sdm(img, txt, pid, 20.0)), float(ref), rel_tol=1e-5)
    # same-identity features identical: the softmax spreads over the identity, which is the target
    proto = torch.eye(3)[pid]
    assert float(sdm(proto, proto, pid, 50.0)) < 1e-4
    assert float(infonce(proto, proto, 50.0)) > 0.3  # InfoNCE still counts the other images as negatives
    with pytest.raises(ValueError, match="unknown loss"):
        matching_loss("triplet", img, txt, pid, 1.0)


# ---- optimisation pieces -------------------------------------------------------------------

def test_weight_decay_skips_norms_biases_embeddings_and_logit_scale():
    t = build_trainable(config(mode="full", learn_logit_scale=True))
    decay, no_decay = param_groups(t.clip, 0.1)
    names = {id(p): n for n, p in t.clip.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "logit_scale" in no_decay_names and "visual.positional_embedding" in no_decay_names
    assert all(names[id(p)].endswith(("weight", "proj", "projection")) for p in decay["params"])
    assert not any(n.endswith(".bias") or ".ln_" in n for n in map(names.get, map(id, decay["params"])))


def test_schedule_warms_up_linearly_then_decays_to_zero():
    f = warmup_cosine(total=10, warmup=4)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and 0.0 < f(7) < 1.0 and f(10) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal of autocast")
def test_autocast_precisions_need_a_gpu():
    assert resolve_device(config(precision="auto")) == (torch.device("cpu"), None)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        resolve_device(config(precision="bf16"))


# ---- training runs -------------------------------------------------------------------------

@pytest.mark.parametrize("mode, steps, lr", [("full", 12, 5e-4), ("frozen-text", 12, 1e-3), ("lora", 12, 3e-3)])
def test_a_few_steps_lower_the_loss(tmp_path, mode, steps, lr):
    cfg = config(mode=mode, max_steps=steps, lr=lr, loss="infonce+sdm")
    before = _dataset_loss(cfg)
    result = train(cfg, Outfits(), tmp_path / "run", progress=False)
    after = _dataset_loss(cfg, tmp_path / "run" / "last.safetensors")
    assert result.steps == steps
    assert after < 0.7 * before, (mode, before, after)
    trainable, total = result.trainable_params, result.total_params
    assert (trainable == total - 1) if mode == "full" else (0 < trainable < total)  # logit scale fixed


def test_run_folder_contract_and_best_by_validation(tmp_path):
    scores = iter([10.0, 30.0, 20.0])
    run = tmp_path / "run"
    result = train(config(mode="frozen-text", max_steps=6, eval_every=2), Outfits(), run,
                   validate=lambda enc: {"R1": next(scores), "mAP": 1.0}, progress=False)
    assert {p.name for p in run.iterdir()} >= {"last.safetensors", "best.safetensors", "state.pt", "metrics.jsonl",
                                               "curves.png", "model.json"}
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "lr", "step_time_s"} <= set(r) for r in train_rows)
    assert [(r["step"], r["R1"]) for r in rows if r["kind"] == "eval"] == [(2, 10.0), (4, 30.0), (6, 20.0)]
    info = json.loads((run / "model.json").read_text())
    assert info["best"] == {"step": 4, "metrics": {"R1": 30.0, "mAP": 1.0}} == result.best
    assert info["final_eval"] == {"R1": 20.0, "mAP": 1.0}
    assert info["arch"] == "PS-Tiny-ViT" and info["image_size"] == [64, 32] and info["mode"] == "frozen-text"
    assert info["trainable_params"] == result.trainable_params and info["checkpoint"]["adapters"] is None
    assert info["text_templates"] == ["{}"]  # captions went to the text tower as written
    assert (run / "best.safetensors").read_bytes() != (run / "last.safetensors").read_bytes()
    with pytest.raises(TrainError, match="already holds a run"):
        train(config(mode="frozen-text", max_steps=6), Outfits(), run, progress=False)


def test_resume_continues_the_same_trajectory(tmp_path):
    cfg = config(mode="lora", lora_dropout=0.2, batch_size=4, max_steps=6, eval_every=3, shuffle_captions=True)
    train(cfg, Outfits(), tmp_path / "straight", validate=lambda enc: {"R1": 0.0}, progress=False)

    def interrupt(enc):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # like Ctrl-C at step 3, mid-epoch (4 steps per epoch)
        train(cfg, Outfits(), tmp_path / "cut", validate=interrupt, progress=False)
    assert torch.load(tmp_path / "cut" / "state.pt", weights_only=True)["step"] == 3
    result = train(cfg, Outfits(), tmp_path / "cut", validate=lambda enc: {"R1": 0.0}, resume=True, progress=False)
    assert result.steps == 6

    def losses(run):
        return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if r["kind"] == "train"]
    assert losses(tmp_path / "cut") == pytest.approx(losses(tmp_path / "straight"), rel=1e-5)
    with pytest.raises(TrainError, match="other settings.*lora_rank"):
        train(config(mode="lora", lora_rank=8, batch_size=4, max_steps=8), Outfits(), tmp_path / "cut",
              resume=True, progress=False)


def test_shuffle_captions_permutes_across_identities():
    captions = [f"caption of {i}" for i in range(8)]
    labels = [0, 0, 1, 1, 1, 2, 3, 3]
    out = shuffle_captions(captions, torch.Generator().manual_seed(0))
    assert sorted(out) == captions and out != captions
    assert shuffle_captions(captions, torch.Generator().manual_seed(0)) == out  # seeded
    # over many batches a caption lands on its own identity only as often as chance says
    source = {c: labels[i] for i, c in enumerate(captions)}
    g = torch.Generator().manual_seed(1)
    same = [sum(source[c] == labels[i] for i, c in enumerate(shuffle_captions(captions, g))) for _ in range(400)]
    chance = sum(labels.count(k) ** 2 for k in set(labels)) / len(labels)  # expected own-identity hits per batch
    assert abs(sum(same) / len(same) - chance) < 0.2 and min(same) == 0


def test_shuffled_captions_control_stays_at_chance(tmp_path):
    data = Outfits()
    runs = {}
    for shuffle in (False, True):
        runs[shuffle] = train(config(mode="full", max_steps=16, lr=1e-3, eval_every=16, loss="infonce+sdm",
                                     shuffle_captions=shuffle), data, tmp_path / f"shuffle{shuffle}",
                              validate=lambda enc: rank1(enc, data), progress=False).final_eval["R1"]
    assert runs[False] >= 75.0, runs
    assert runs[True] <= 50.0, runs  # 4 identities: chance is 25 %


def test_encoder_over_the_live_model_matches_the_model(tmp_path):
    t = build_trainable(config(mode="full"))
    t.clip.eval()
    enc = t.encoder(device=torch.device("cpu"), batch_size=3, step=7)
    assert type(enc).__name__ == "ClipEncoder" and enc.model_id == f"{t.facts.arch}@training-step7"
    x = torch.stack([img for img, _, _ in Outfits(per_id=2)])
    with torch.no_grad():
        ref = F.normalize(t.clip.encode_image(x), dim=-1).numpy()
    assert enc.encode_preprocessed(x.numpy()) == pytest.approx(ref, abs=1e-5)
    assert enc.encode_text(["a", "b"]).shape == (2, enc.dim)


# ---- command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--data", "{missing}", "--out", "{out}"], "no such dataset folder"),
    (["--data", "{tmp}", "--out", "{out}", "--mode", "bogus"], "mode must be one of full, frozen-text, lora"),
    (["--data", "{tmp}", "--out", "{out}", "--mode", "lora", "--lora-rank", "0"], "lora rank must be > 0"),
    (["--data", "{tmp}", "--out", "{out}", "--image-size", "384"], "expects WIDTHxHEIGHT"),
    (["--data", "{tmp}", "--out", "{out}", "--image-size", "384x128"], "for 384 tall and 128 wide write 128x384"),
])
def test_bad_train_arguments_give_one_line(tmp_path, capsys, args, message):
    subst = {"missing": str(tmp_path / "nope"), "tmp": str(tmp_path), "out": str(tmp_path / "run")}
    assert cli_main(["train", *[a.format(**subst) for a in args]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_train_command_on_a_generated_dataset(tmp_path, capsys):
    data, run = tmp_path / "synth", tmp_path / "run"
    assert cli_main(["data", "synth", str(data), "--ids", "12", "--images-per-id", "2", "--size", "32x64",
                     "--val-ids", "4", "--test-ids", "2"]) == 0
    assert cli_main(["train", "--data", str(data), "--arch", "PS-Tiny-ViT", "--image-size", "32x64", "--mode", "lora",
                     "--lora-rank", "4", "--max-steps", "2", "--batch-size", "4", "--threads", "1",
                     "--out", str(run)]) == 0
    assert "parameters trained" in capsys.readouterr().out
    info = json.loads((run / "model.json").read_text())
    assert info["data"]["format"] == "cuhk-pedes" and info["data"]["digest"].startswith("sha256-")
    # the run validated on the 4 val identities at its last step: figures in range, ordered, logged as given
    final = info["final_eval"]
    assert final is not None, info
    assert 0.0 <= final["R1"] <= final["R5"] <= final["R10"] <= 100.0 and 0.0 < final["mAP"] <= 100.0, final
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last_eval = [r for r in rows if r.get("kind") == "eval"][-1]
    assert last_eval["step"] == 2 and all(last_eval[k] == pytest.approx(v) for k, v in final.items()), last_eval
    assert cli_main(["train", "--data", str(data), "--out", str(run), "--mode", "lora", "--lora-rank", "8",
                     "--arch", "PS-Tiny-ViT", "--image-size", "32x64", "--resume"]) == 2  # other settings


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_training_on_gpu(tmp_path, precision):
    result = train(config(mode="lora", max_steps=4, precision=precision, device="cuda"), Outfits(), tmp_path / "run",
                   progress=False)
    assert result.steps == 4 and math.isfinite(result.last_loss)
    assert resolve_device(config(precision=precision, device="cuda"))[1] == getattr(torch, {
        "bf16": "bfloat16", "fp16": "float16"}[precision])


def test_seed_draws_the_initial_weights_of_a_from_scratch_run():
    """``--seed`` changes the random init (not only data order), and the same seed gives the same init."""
    from person_search.lab.train.model import build_model

    def first_weights(seed):
        model, facts, _ = build_model(config(seed=seed, weights=""))
        return next(iter(model.parameters())).detach().clone(), facts.weights_id

    (a0, id0), (a0b, _), (a1, id1) = first_weights(0), first_weights(0), first_weights(1)
    assert torch.equal(a0, a0b) and not torch.equal(a0, a1)
    assert (id0, id1) == ("random-seed0", "random-seed1")
