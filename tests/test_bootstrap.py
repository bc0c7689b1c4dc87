"""Bootstrap intervals (promptgen.core.metrics, promptgen.evaluation.intervals): on numbers whose truth is known."""

from __future__ import annotations

import math

import pytest
import torch

from promptgen.core.judging import ResolvedTarget, judged_figure
from promptgen.core.metrics import (
    bias_corrected_interval,
    bootstrap,
    frechet_distance,
    kl_divergence,
    kl_divergences,
    percentile_interval,
    resampled_counts,
)
from promptgen.core.protocols import AttributeTarget
from promptgen.evaluation.intervals import attribute_intervals, frechet_interval, junk_interval, resampled_frechet
from promptgen.plugin import ClassifierEntry

DIGITS = [str(d) for d in range(10)]


def test_bootstrap_is_seeded_and_chunked_resamples_cover_all_of_them():
    x = torch.arange(50.0)
    a = bootstrap(lambda idx: x[idx].mean(1), 50, resamples=300, seed=3)
    b = bootstrap(lambda idx: x[idx].mean(1), 50, resamples=300, seed=3, max_elements=50 * 7)  # 43 chunks
    c = bootstrap(lambda idx: x[idx].mean(1), 50, resamples=300, seed=4)
    assert a.shape == b.shape == (300,)
    assert torch.equal(a, bootstrap(lambda idx: x[idx].mean(1), 50, resamples=300, seed=3))
    assert not torch.equal(a, c)
    # Chunking changes which resamples are drawn, not what they are: the spread is the mean's standard error.
    se = float(x.std()) / math.sqrt(50)
    for v in (a, b, c):
        assert float(v.std()) == pytest.approx(se, rel=0.2)
    with pytest.raises(ValueError):
        bootstrap(lambda idx: idx.double().mean(1), 0)


def test_resampled_counts_match_bincount():
    cats = torch.randint(0, 4, (30,), generator=torch.Generator().manual_seed(0))
    idx = torch.randint(0, 30, (5, 30), generator=torch.Generator().manual_seed(1))
    counts = resampled_counts(cats, 4, idx)
    for row, i in zip(counts, idx):
        assert row.tolist() == torch.bincount(cats[i], minlength=4).double().tolist()


def test_kl_divergences_match_kl_divergence_row_by_row():
    target = [0.1, 0.2, 0.3, 0.4]
    rows = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    got = kl_divergences(rows, target)
    for r, g in zip(rows[:3], got[:3]):
        assert float(g) == pytest.approx(kl_divergence(r.tolist(), target), abs=1e-12)
    assert math.isinf(float(got[3]))
    assert math.isinf(float(kl_divergences(torch.tensor([[0.5, 0.5]]), [1.0, 0.0])[0]))


def test_the_percentile_interval_of_a_mean_covers_the_truth_about_95_percent_of_the_time():
    g = torch.Generator().manual_seed(0)
    covered = 0
    for trial in range(200):
        x = torch.randn(200, generator=g, dtype=torch.float64) + 2.0
        lo, hi = percentile_interval(bootstrap(lambda idx, x=x: x[idx].mean(1), 200, resamples=400, seed=trial))
        covered += lo <= 2.0 <= hi
    assert 0.89 <= covered / 200 <= 0.99


def test_the_bias_corrected_interval_covers_a_small_kl_where_the_percentile_interval_does_not():
    # A histogram near its target: the plug-in KL of 2,000 samples is biased upward by about (K - 1) / 2n, as
    # much as the KL itself; the percentile interval of its resamples sits above the truth.
    p = torch.tensor([0.12, 0.08, 0.1, 0.11, 0.09, 0.1, 0.1, 0.105, 0.095, 0.1], dtype=torch.float64)
    target = [0.1] * 10
    truth = kl_divergence(p.tolist(), target)
    g = torch.Generator().manual_seed(0)
    plain = corrected = 0
    trials = 80
    for trial in range(trials):
        x = torch.multinomial(p, 2000, replacement=True, generator=g)
        estimate = kl_divergence(torch.bincount(x, minlength=10).double().tolist(), target)
        values = bootstrap(lambda idx, x=x: kl_divergences(resampled_counts(x, 10, idx), target), 2000, resamples=400, seed=trial)
        lo, hi = percentile_interval(values)
        plain += lo <= truth <= hi
        lo, hi = bias_corrected_interval(estimate, values, floor=0.0)
        assert lo >= 0.0
        corrected += lo <= truth <= hi
    assert corrected / trials >= 0.85
    assert plain < corrected


def test_resampled_frechet_matches_frechet_distance_on_each_resample():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 6, generator=g) * 1.3, torch.randn(300, 6, generator=g) + 0.2
    w = torch.rand(300, generator=g)
    idx = torch.randint(0, 300, (4, 300), generator=g)
    for kwargs in ({}, {"paired": True}, {"weights": w}):
        batched = resampled_frechet(a, b, idx, **kwargs)
        one_by_one = [
            frechet_distance(a[i], b[i] if kwargs.get("paired") else b, weights=w[i] if "weights" in kwargs else None) for i in idx
        ]
        assert batched.tolist() == pytest.approx(one_by_one, rel=1e-9, abs=1e-9)
    # Fewer samples than dimensions: the sample-space route, one by one.
    few = torch.randint(0, 4, (2, 4), generator=g)
    small = resampled_frechet(a[:4], b[:5], few)
    assert small.tolist() == pytest.approx([frechet_distance(a[:4][i], b[:5]) for i in few], rel=1e-9)


def test_frechet_interval_holds_the_distance_of_more_samples():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(2000, 8, generator=g, dtype=torch.float64)
    big = torch.randn(20000, 8, generator=g, dtype=torch.float64) * 1.2 + 0.3
    truth = frechet_distance(big, ref)
    covered = 0
    for trial in range(10):
        x = big[torch.randint(0, 20000, (1000,), generator=g)]
        lo, hi = frechet_interval(x, ref, frechet_distance(x, ref), seed=trial, resamples=100)
        assert lo <= frechet_distance(x, ref) + 0.05 and lo < hi
        covered += lo <= truth <= hi
    assert covered >= 8


def test_attribute_intervals_surround_judged_figures_and_shrink_with_more_samples():
    entry = ClassifierEntry("fake", {"digit": DIGITS}, lambda options, registry: None, role="evaluator")
    resolved = ResolvedTarget(AttributeTarget("digit", tuple(DIGITS), asked=("3", "5")), [(entry, True)], list(range(10)))
    uniform = ResolvedTarget(AttributeTarget("digit", tuple(DIGITS), target=(0.1,) * 10), [(entry, True)], list(range(10)))
    g = torch.Generator().manual_seed(0)
    widths = []
    for n in (400, 4000):
        classes = torch.randint(0, 10, (n,), generator=g)
        junk = torch.rand(n, generator=g) < 0.1
        fig = judged_figure(resolved, [classes], junk)
        ci = attribute_intervals(resolved, [classes], junk, None, seed=0, resamples=300)
        assert ci.kl is None and ci.share is not None and ci.junk is not None
        assert ci.share[0] <= fig.share <= ci.share[1]
        assert ci.junk[0] <= fig.junk <= ci.junk[1]
        assert all(lo <= h <= hi for h, (lo, hi) in zip(fig.histogram, ci.histogram))
        assert junk_interval(junk, seed=0, resamples=300) == pytest.approx(ci.junk)  # the same resamples
        kl = judged_figure(uniform, [classes], junk)
        kci = attribute_intervals(uniform, [classes], junk, kl.kl, seed=0, resamples=300)
        assert kci.kl is not None and kci.share is None and kci.kl[0] >= 0.0
        widths.append(ci.share[1] - ci.share[0])
    # Ten times the samples: about a third of the width.
    assert widths[1] < 0.5 * widths[0]
