"""Writes dp/test-vectors/{rdp,pld}.json: epsilons from Google's dp_accounting (PyPI 0.6.0).

These are the reference values the TypeScript accountants are tested against
(dp/src/reference.test.ts). Regenerate with:

    python3 -m venv .venv-bench && .venv-bench/bin/pip install dp-accounting==0.6.0
    .venv-bench/bin/python dp/scripts/gen_reference.py
    node_modules/.bin/prettier --write dp/test-vectors   # the repo's JSON style; values unchanged

The RDP grid uses dp_accounting's default orders (fractional 1.1..10.9, integers 11..63, and
128, 256, 512, 1024). "epsilon" is dp_accounting's improved conversion (its `compute_epsilon`,
Canonne-Kamath-Steinke 2020 / Balle et al. 2020); "epsilon_classic" is Mironov 2017
Proposition 3 applied to the same RDP vector; "delta" is dp_accounting's `compute_delta` at
epsilon_for_delta. The PLD grid uses dp_accounting's PLDAccountant with its default
discretization (1e-4, pessimistic connect-the-dots).
"""

import json
import math
import os
import sys
import time

import dp_accounting
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant as rdp

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'test-vectors')


def rdp_point(q, sigma, steps, delta, eps_for_delta):
  acc = rdp.RdpAccountant()
  acc.compose(
      dp_event.SelfComposedDpEvent(
          dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps))
  eps, order = acc.get_epsilon_and_optimal_order(delta)
  classic = min(
      r - math.log(delta) / (a - 1) for a, r in zip(acc.orders, acc.rdp) if a > 1)
  d, d_order = acc.get_delta_and_optimal_order(eps_for_delta)
  return {
      'q': q, 'sigma': sigma, 'steps': steps, 'delta': delta,
      'epsilon': float(eps), 'order': float(order),
      'epsilon_classic': float(max(0.0, classic)),
      'epsilon_for_delta': eps_for_delta, 'delta_for_epsilon': float(d),
  }


def wor_point(n, m, sigma, steps, delta):
  acc = rdp.RdpAccountant(
      neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
  acc.compose(
      dp_event.SelfComposedDpEvent(
          dp_event.SampledWithoutReplacementDpEvent(n, m, dp_event.GaussianDpEvent(sigma)),
          steps))
  eps, order = acc.get_epsilon_and_optimal_order(delta)
  return {'source_size': n, 'sample_size': m, 'sigma': sigma, 'steps': steps,
          'delta': delta, 'epsilon': float(eps), 'order': float(order)}


def pld_point(q, sigma, steps, delta):
  acc = pld_privacy_accountant.PLDAccountant()
  event = dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma))
  acc.compose(event if q < 1 else dp_event.GaussianDpEvent(sigma), steps)
  return {'q': q, 'sigma': sigma, 'steps': steps, 'delta': delta,
          'epsilon': float(acc.get_epsilon(delta))}


def main():
  os.makedirs(OUT, exist_ok=True)
  t0 = time.time()
  points = []
  for q in [1e-5, 1e-4, 1e-3, 0.004, 0.01, 0.05, 0.1, 0.3, 0.6, 1.0]:
    for sigma in [0.5, 0.8, 1.1, 2.0, 5.0, 20.0]:
      for steps in [1, 100, 10000]:
        for delta in [1e-5, 1e-9]:
          points.append(rdp_point(q, sigma, steps, delta, eps_for_delta=1.0))
  # The TF Privacy MNIST tutorial: N = 60000, batch 256, sigma 1.1, 60 epochs, delta 1e-5.
  points.append(rdp_point(256 / 60000, 1.1, math.ceil(60 * 60000 / 256), 1e-5, 3.0))
  wor = []
  for n, m in [(60000, 256), (1000, 10), (100, 50), (1000000, 1000)]:
    for sigma in [0.8, 1.1, 3.0]:
      for steps in [1, 100, 1000]:
        wor.append(wor_point(n, m, sigma, steps, 1e-5))
  meta = {
      'generator': 'dp/scripts/gen_reference.py',
      'dp_accounting': '0.6.0',
      'orders': [float(o) for o in rdp.DEFAULT_RDP_ORDERS],
  }
  with open(os.path.join(OUT, 'rdp.json'), 'w') as f:
    json.dump({**meta, 'poisson': points, 'without_replacement': wor}, f, indent=1)
    f.write('\n')
  print(f'rdp: {len(points)} + {len(wor)} points in {time.time() - t0:.1f} s', file=sys.stderr)

  t0 = time.time()
  pld = []
  for q in [1.0, 0.1, 0.01, 0.001]:
    for sigma in [0.8, 1.1, 2.0, 5.0]:
      for steps in [1, 100, 1000]:
        pld.append(pld_point(q, sigma, steps, 1e-5))
  with open(os.path.join(OUT, 'pld.json'), 'w') as f:
    json.dump({'generator': 'dp/scripts/gen_reference.py', 'dp_accounting': '0.6.0',
               'value_discretization_interval': 1e-4, 'points': pld}, f, indent=1)
    f.write('\n')
  print(f'pld: {len(pld)} points in {time.time() - t0:.1f} s', file=sys.stderr)


if __name__ == '__main__':
  main()
