"""X-WIN losses on hand-made tensors."""

import math

import torch
import torch.nn.functional as F

from drrkit.train import losses as L


def test_info_nce_is_minimal_for_aligned_embeddings():
    t = torch.eye(6, 16)  # six orthogonal target embeddings
    aligned = L.info_nce(t.clone(), t, tau=0.1)
    expected = math.log(1 + 5 * math.exp(-1 / 0.1))  # each positive 1/τ above five negatives at 0
    assert abs(float(aligned) - expected) < 1e-5 and float(aligned) < 1e-3
    shuffled = L.info_nce(t[torch.tensor([1, 2, 3, 4, 5, 0])], t, tau=0.1)
    random = L.info_nce(torch.randn(6, 16, generator=torch.Generator().manual_seed(0)), t, tau=0.1)
    assert float(shuffled) > 9.0 and float(random) > float(aligned)
    assert abs(float(L.info_nce(3.0 * t, t)) - float(aligned)) < 1e-6  # L2-normalised: scale-free


def test_affinity_soft_labels_rows_sum_to_one_and_favour_lookalikes():
    t = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]])
    a = L.affinity_targets(t, tau_tilde=0.1)
    assert torch.allclose(a.sum(1), torch.ones(3))
    assert a[0, 1] > 0.3 and a[0, 2] < 1e-3  # the look-alike view shares mass, the other does not
    identical = L.affinity_targets(torch.ones(4, 3))
    assert torch.allclose(identical, torch.full((4, 4), 0.25))


def test_affinity_loss_does_not_punish_predicting_a_lookalike():
    t = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]])
    z_swapped = t[torch.tensor([1, 0, 2])]  # rows 0/1 predict each other's look-alike
    hard, soft = L.info_nce(z_swapped, t), L.affinity_loss(z_swapped, t)
    assert float(soft) < float(hard)
    # distinct targets and sharp affinities: the soft labels are one-hot and the term is InfoNCE
    distinct, z = torch.eye(3), torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(L.affinity_loss(z, distinct, tau_tilde=0.01), L.info_nce(z, distinct), atol=1e-4)


def test_volume_scoped_affinity_spreads_only_over_the_same_ct():
    # views 0, 1 of CT 0 and view 2 of CT 1; view 2 looks like view 0 (another CT at the same angle)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.99, 0.14]])
    groups = torch.tensor([0, 0, 1])
    batch, volume = L.affinity_targets(t, 0.1), L.affinity_targets(t, 0.1, groups)
    assert torch.allclose(volume.sum(1), torch.ones(3))
    assert batch[0, 2] > 0.3 and volume[0, 2] == 0 and volume[2, 0] == 0 and volume[2, 2] == 1
    # predicting the other CT's look-alike costs as much as in InfoNCE when scoped to the volume
    z_swapped = t[torch.tensor([2, 1, 0])]
    hard = L.info_nce(z_swapped, t)
    assert float(L.affinity_loss(z_swapped, t, groups=groups)) > 0.99 * float(hard)
    assert float(L.affinity_loss(z_swapped, t)) < 0.95 * float(hard)  # batch scope: forgiven


def test_mim_is_mse_averaged_over_domains():
    p1, h1 = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    p2, h2 = torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)
    assert float(L.mim_loss([(p1, h1), (p2, h2)])) == 0.5
    normed = L.layer_normed(torch.randn(2, 5, 8))
    assert torch.allclose(normed.mean(-1), torch.zeros(2, 5), atol=1e-5)


def test_domain_loss_gradient_pulls_toward_target_and_real():
    z = torch.zeros(1, 2, 4, requires_grad=True)
    t = torch.ones(1, 2, 4)
    w = torch.ones(4)  # a linear "classifier": logit = <pool(z), w>
    loss = L.domain_loss(z, t, z.mean(1) @ w)
    loss.backward()
    step = -z.grad  # gradient descent direction
    assert bool((step > 0).all())  # toward t (all ones) and toward higher "real" logit
    assert float(L.domain_loss(t.clone(), t, torch.tensor([50.0]))) < 1e-6  # on target and surely real → 0


def test_classifier_loss_is_bce_with_real_as_one():
    good = L.classifier_loss(torch.tensor([-10.0, -10.0]), torch.tensor([10.0]))
    bad = L.classifier_loss(torch.tensor([10.0]), torch.tensor([-10.0]))
    assert float(good) < 1e-3 and float(bad) > 9.0
    chance = L.classifier_loss(torch.zeros(3), torch.zeros(3))
    assert abs(float(chance) - math.log(2)) < 1e-6
    assert F.binary_cross_entropy_with_logits(torch.tensor([0.0]), torch.tensor([1.0])) == chance
