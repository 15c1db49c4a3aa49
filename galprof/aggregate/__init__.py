"""Learnable pooling of a user's photo features into one descriptor and predicted interests.

The paper aggregates the features x(m) of a user's M photos into one descriptor and feeds it
to C logistic regressions (one per interest category). Five aggregators are compared (Table 3):

- ``average``: the mean of the features;
- ``attention-cg``: one attention block over all D features, then context gating;
- ``nan``: two attention blocks (neural aggregation network, Yang et al.);
- ``nan-cg-fc``: two attention blocks, context gating and a hidden layer of 2048;
- ``reduced-attention``: equations (1)-(3), s(m) = W_s x(m) with S = 128,
  w(m) = softmax_m(q^T s(m)), descriptor = sum_m w(m) s(m).

Modules: ``synth`` (benchmark generator), ``data`` (file format), ``models``/``train``
(TensorFlow, the optional ``train`` extra), ``infer`` (numpy only: what ``galprof profile``
uses). Importing this package never imports TensorFlow.
"""

from __future__ import annotations

# Order of Table 3 in the paper; the CLI, the benchmark and the export all use these names.
AGGREGATORS = ("average", "attention-cg", "nan", "nan-cg-fc", "reduced-attention")

# Size of the reduced descriptor of equation (1), as in the paper.
REDUCED_SIZE = 128

# Width of the hidden layer of aggregator 4.
HIDDEN_SIZE = 2048

# Dropout before the sigmoid layer while training. Measured on the synthetic benchmark
# (20,000 users, D = 1280): without it reduced attention overfits after 3 epochs (recall@5
# 0.71, with it 0.75); average pooling, a linear model on the mean, does not overfit (best
# epoch 15 of 25) and loses with it (recall@5 0.70 without, 0.62 with).
DROPOUT = {"average": 0.0, "attention-cg": 0.5, "nan": 0.5, "nan-cg-fc": 0.5,
           "reduced-attention": 0.5}

# Passes over the training users; the epoch with the lowest validation loss is kept.
EPOCHS = 20

# Numbers of recommended categories at which precision and recall are reported (Table 3).
TOP_K = (5, 10, 15)
