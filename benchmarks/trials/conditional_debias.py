"""Trial (not a feature): a class-conditional flow for the joint ``debias:digit*thickness``.

One spline-coupling flow conditioned on a one-hot of the 30 (digit, thickness)
combinations, trained with ``w · (−log p_digit − log p_thickness)`` for a class
drawn evenly, and sampled as an even mixture. With AUG > 0 the control
classifiers' probabilities are averaged over AUG random shifts of up to 2
pixels (so one exact pixel pattern cannot fool them). Judged like
benchmarks/debias_mnist.py: KL over the 30 combinations on 5,000 samples by
the evaluators. Recorded in docs/debiasing.md.

    python benchmarks/trials/conditional_debias.py STEPS WEIGHT BATCH HIDDEN TRANSFORMS [AUG]
    python benchmarks/trials/conditional_debias.py 3000 30 60 128 4 4
"""
import math
import sys
import time

import torch
from torch import nn
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.lazy import LazyComposedTransform
from zuko.transforms import MonotonicRQSTransform

from promptgen.builtin import build_mnist
from promptgen.flow import coupling_masks
from promptgen.metrics import kl_divergence
from promptgen.registry import get_registry
from promptgen.spec import parse_spec

steps = int(sys.argv[1]); w = float(sys.argv[2]); B = int(sys.argv[3]); H = int(sys.argv[4]); T = int(sys.argv[5]); AUG = int(sys.argv[6]) if len(sys.argv) > 6 else 0
torch.manual_seed(0)
reg = get_registry()
G = build_mnist(parse_spec("mnist"))
dig = reg.classifier("mnist-digit").build(); stk = reg.classifier("mnist-stroke").build()
dige = reg.classifier("mnist-digit-evaluator").build(); stke = reg.classifier("mnist-stroke-evaluator").build()
K = 30; d = 32
class CF(nn.Module):
    def __init__(s):
        super().__init__()
        masks = coupling_masks(d, T, 0)
        s.t = LazyComposedTransform(*(GeneralCouplingTransform(features=d, context=K, mask=m, hidden_features=(H,H), univariate=MonotonicRQSTransform, shapes=((8,),(8,),(7,))) for m in masks))
        for l in s.t.transforms:
            nn.init.zeros_(l.hyper[-1].weight); nn.init.zeros_(l.hyper[-1].bias)
    def forward(s, eps, c):
        ctx = nn.functional.one_hot(c, K).float()
        return s.t(ctx).call_and_ladj(eps)
f = CF()
opt = torch.optim.Adam(f.parameters(), 1e-3)
sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
t0 = time.time()
for step in range(1, steps + 1):
    c = torch.arange(B) % K
    eps = torch.randn(B, d)
    z, ladj = f(eps, c)
    x = G.decode(z)
    if AUG:
        # Average the control's probabilities over random shifts of up to 2 pixels, so one exact pixel pattern cannot fool it.
        xs = torch.cat([torch.roll(x, shifts=(int(a), int(b)), dims=(2, 3)) for a, b in torch.randint(-2, 3, (AUG, 2))])
        ld = torch.logsumexp(dig.log_probs(xs)["digit"].view(AUG, -1, 10), 0) - math.log(AUG)
        lt = torch.logsumexp(stk.log_probs(xs)["thickness"].view(AUG, -1, 3), 0) - math.log(AUG)
    else:
        ld = dig.log_probs(x)["digit"]; lt = stk.log_probs(x)["thickness"]
    e = -(ld.gather(1, (c // 3)[:, None])[:, 0] + lt.gather(1, (c % 3)[:, None])[:, 0])
    a = min(1.0, step / (0.3 * steps))
    loss = (0.5 * z.pow(2).sum(1) + a * w * e - ladj).mean()
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(f.parameters(), 10); opt.step(); sch.step()
    if step % 250 == 0: print(step, round(float(loss.detach()), 3), round(float(e.detach().mean()), 3), round(time.time() - t0, 1), flush=True)
with torch.no_grad():
    n = 5000
    c = torch.randint(0, K, (n,), generator=torch.Generator().manual_seed(1))
    z, _ = f(torch.randn(n, d), c)
    x = torch.cat([G.decode(p) for p in z.split(500)])
    pd = torch.cat([dige.log_probs(p)["digit"].argmax(1) for p in x.split(500)])
    pt = torch.cat([stke.log_probs(p)["thickness"].argmax(1) for p in x.split(500)])
    j = pd * 3 + pt
    h = torch.bincount(j, minlength=K).float() / n
    acc = float((j == c).float().mean())
    print("steps", steps, "w", w, "time", round(time.time() - t0, 1), "jointKL", round(kl_divergence(h.tolist(), [1 / K] * K), 4), "acc", round(acc, 3))
    print("per-class acc", [round(float((j[c == k] == k).float().mean()), 2) for k in range(K)])
    for k in (5, 9, 11, 19, 28):
        m = c == k
        ct = torch.cat([stk.log_probs(p)["thickness"].exp() for p in x[m].split(500)]).mean(0)
        cd = torch.cat([dig.log_probs(p)["digit"].exp() for p in x[m].split(500)]).mean(0)
        print(k, "eval digit", torch.bincount(pd[m], minlength=10).tolist(), "eval thick", torch.bincount(pt[m], minlength=3).tolist(), "ctrl thick", [round(float(v),2) for v in ct], "ctrl digit max", round(float(cd.max()),2))
