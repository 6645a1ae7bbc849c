"""Retrieval metrics: hand-worked rankings and a direct port of IRRA's torch ``rank()``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from person_search.lab.data.datasets import EvalView
from person_search.lab.eval import metrics
from person_search.lab.eval.metrics import chance_cmc, retrieval_metrics


def irra_rank(similarity, q_pids, g_pids, max_rank=10):
    """Port IRRA utils/metrics.py rank(get_mAP=True) line by line (the reference)."""
    indices = torch.argsort(similarity, dim=1, descending=True)
    pred_labels = g_pids[indices]
    matches = pred_labels.eq(q_pids.view(-1, 1))
    all_cmc = matches[:, :max_rank].cumsum(1)
    all_cmc[all_cmc > 1] = 1
    all_cmc = all_cmc.float().mean(0) * 100
    num_rel = matches.sum(1)
    tmp_cmc = matches.cumsum(1)
    inp = [tmp_cmc[i][row.nonzero()[-1]] / (row.nonzero()[-1] + 1.) for i, row in enumerate(matches)]
    mINP = torch.cat(inp).mean() * 100
    tmp_cmc = [tmp_cmc[:, i] / (i + 1.0) for i in range(tmp_cmc.shape[1])]
    tmp_cmc = torch.stack(tmp_cmc, 1) * matches
    AP = tmp_cmc.sum(1) / num_rel
    mAP = AP.mean() * 100
    return all_cmc, mAP, mINP


def test_perfect_ranking_is_100_everywhere():
    sim = np.array([[0.9, 0.8, 0.1, 0.0], [0.0, 0.1, 0.8, 0.9]])
    m = retrieval_metrics(sim, [1, 2], [1, 1, 2, 2])
    assert (m["R1"], m["R5"], m["R10"], m["mAP"], m["mINP"]) == (100.0, 100.0, 100.0, 100.0, 100.0)
    np.testing.assert_allclose(m["cmc"], [100, 100, 100, 100])


def test_several_positives_hand_worked():
    # gallery pids in rank order 1 2 1 3 1: positives at ranks 1, 3, 5
    # AP = (1/1 + 2/3 + 3/5) / 3 = 0.755555...; INP = 3 positives / rank 5 = 0.6
    m = retrieval_metrics(np.array([[0.9, 0.8, 0.7, 0.6, 0.5]]), [1], [1, 2, 1, 3, 1])
    assert m["R1"] == 100.0
    assert m["mAP"] == pytest.approx(100 * (1 + 2 / 3 + 3 / 5) / 3)
    assert m["mINP"] == pytest.approx(60.0)


def test_positive_ranked_last():
    # the only positive at rank 4 of 4: CMC 0 0 0 100; AP = 1/4; INP = 1/4; R5, R10 capped at the gallery
    m = retrieval_metrics(np.array([[0.4, 0.3, 0.2, 0.1]]), [7], [2, 3, 4, 7])
    np.testing.assert_allclose(m["cmc"], [0, 0, 0, 100])
    assert (m["R1"], m["R5"], m["R10"]) == (0.0, 100.0, 100.0)
    assert m["mAP"] == pytest.approx(25.0) and m["mINP"] == pytest.approx(25.0)


def test_ties_keep_gallery_order():
    # all scores equal: the stable order is the gallery order 2 1 1, positives at ranks 2 and 3
    # R1 = 0; AP = (1/2 + 2/3) / 2 = 0.58333; INP = 2/3
    m = retrieval_metrics(np.array([[0.5, 0.5, 0.5]]), [1], [2, 1, 1])
    assert m["R1"] == 0.0
    assert m["mAP"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert m["mINP"] == pytest.approx(100 * 2 / 3)


def test_mean_over_queries():
    # query A (pid 1): positive first -> AP 1, INP 1; query B (pid 2): positive second -> AP 1/2, INP 1/2
    sim = np.array([[0.9, 0.1], [0.9, 0.1]])
    m = retrieval_metrics(sim, [1, 2], [1, 2])
    assert m["R1"] == 50.0 and m["mAP"] == pytest.approx(75.0) and m["mINP"] == pytest.approx(75.0)


@pytest.mark.parametrize("chunk", [512, 7])
def test_matches_irra_rank_on_random_matrices(monkeypatch, chunk):
    monkeypatch.setattr(metrics, "CHUNK", chunk)
    rng = np.random.default_rng(3)
    for q, g, ids in ((37, 53, 9), (120, 40, 12), (5, 300, 4)):
        gp = np.concatenate([np.arange(ids), rng.integers(0, ids, g - ids)])
        qp = rng.integers(0, ids, q)
        sim = rng.standard_normal((q, g)).astype(np.float32)
        ours = retrieval_metrics(sim, qp, gp)
        cmc, mAP, mINP = irra_rank(torch.from_numpy(sim), torch.from_numpy(qp), torch.from_numpy(gp))
        assert ours["R1"] == pytest.approx(float(cmc[0]), abs=1e-4)
        assert ours["R5"] == pytest.approx(float(cmc[4]), abs=1e-4)
        assert ours["R10"] == pytest.approx(float(cmc[9]), abs=1e-4)
        assert ours["mAP"] == pytest.approx(float(mAP), abs=1e-4)
        assert ours["mINP"] == pytest.approx(float(mINP), abs=1e-4)
        np.testing.assert_allclose(ours["cmc"][:10], cmc.numpy(), atol=1e-4)


def test_query_without_positive_is_an_error():
    with pytest.raises(ValueError, match="query 1 .pid 9. has no positive"):
        retrieval_metrics(np.zeros((2, 3)), [1, 9], [1, 2, 3])


@pytest.mark.parametrize("sim", [np.zeros((2, 2)), np.zeros((3,)), np.full((3, 3), np.nan)])
def test_bad_shapes_and_values(sim):
    with pytest.raises(ValueError):
        retrieval_metrics(sim, [1, 2, 3], [1, 2, 3])


def test_chance_cmc_hand_worked_and_matches_chance_rank1():
    # one query, 2 positives in 4: miss at k=1 with 2/4, at k=2 with 2/4 * 1/3 -> CMC 50, 83.3, 100, 100
    np.testing.assert_allclose(chance_cmc([1], [1, 1, 2, 3]), [50, 100 * 5 / 6, 100, 100])
    view = EvalView([], np.array([1, 1, 2, 3, 3, 3]), ["a", "b", "c"], np.array([1, 2, 3]), np.zeros(3, np.int64))
    view.image_paths = [None] * 6
    assert chance_cmc(view.caption_pids, view.image_pids)[0] == pytest.approx(view.chance_rank1())


def test_random_rankings_average_to_chance():
    rng = np.random.default_rng(0)
    gp = np.repeat(np.arange(10), 3)
    qp = np.arange(10)
    r1 = [retrieval_metrics(rng.random((10, 30)), qp, gp)["cmc"][:5] for _ in range(400)]
    np.testing.assert_allclose(np.mean(r1, 0), chance_cmc(qp, gp, 5), atol=2.0)
