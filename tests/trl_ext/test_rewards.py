"""trl_ext.rewards: hand-computed cases from the paper's equations, invariances and a loop-vs-vectorised check."""

from __future__ import annotations

import pytest
import torch

from trl_ext import rewards as R
from trl_ext.released import place_rewards_on_bracket_ids, value_mask_after_eos


def test_action_rewards_hand_computed():
    # r = clip(α·n − c + γ1·ΣV, −c, 5) with α = 1.5, c = 0.1, γ1 = 0.1
    n = torch.tensor([2, 0, 1, 4, 0])
    values = torch.tensor([0.0, 0.0, 3.0, 0.0, -20.0])
    r = R.action_rewards(n, alpha=1.5, cost=0.1, session_values=values, gamma1=0.1, clip_max=5.0)
    expected = [
        1.5 * 2 - 0.1,  # two relevant papers: 2.9
        -0.1,  # nothing new: the cost
        1.5 * 1 - 0.1 + 0.1 * 3.0,  # γ1 bootstrap: 1.7
        5.0,  # 1.5·4 − 0.1 = 5.9 clipped to 5
        -0.1,  # −0.1 − 2.0 clipped to −c
    ]
    assert r.tolist() == pytest.approx(expected)


def test_action_rewards_per_action_costs_and_alphas():
    r = R.action_rewards(torch.tensor([1, 1]), alpha=torch.tensor([1.5, 1.0]), cost=torch.tensor([0.1, 0.3]))
    assert r.tolist() == pytest.approx([1.4, 0.7])


def test_place_rewards_on_tokens():
    # tokens end at chars 3, 5, 9, 12: "[Se" "ar" "ch] q\n[" ... a reward at char 8 lands on token 2
    ends = torch.tensor([3, 5, 9, 12])
    out = R.place_rewards_on_tokens(ends, torch.tensor([8, 11, 11, 0, 40]), torch.tensor([1.0, 2.0, 0.5, 3.0, 7.0]))
    assert out.tolist() == pytest.approx([3.0, 0.0, 1.0, 2.5 + 7.0])  # same token adds up; past the end -> last
    padded = R.place_rewards_on_tokens(ends, torch.tensor([4]), torch.tensor([1.0]), length=6)
    assert padded.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert R.place_rewards_on_tokens(ends, torch.tensor([]), torch.tensor([])).tolist() == [0.0] * 4


def test_kl_penalty_and_token_rewards_only_on_generated_tokens():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-1.5, -1.0, -9.0]])
    mask = torch.tensor([[True, True, False]])
    scores = torch.tensor([[0.0, 2.0, 5.0]])
    assert R.kl_penalty(logprobs, ref, 0.1, mask)[0].tolist() == pytest.approx([-0.05, 0.1, 0.0])
    assert R.token_rewards(scores, logprobs, ref, 0.1, mask)[0].tolist() == pytest.approx([-0.05, 2.1, 0.0])


@pytest.mark.parametrize("gae", [R.masked_gae, R.masked_gae_loop])
def test_gae_hand_computed(gae):
    # δ_t = r_t + γ V_{t+1} − V_t, A_t = δ_t + γλ A_{t+1}, terminal after the last token; γ = 1, λ = 0.5
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 0.2, 0.3]])
    adv, ret = gae(rewards, values, torch.ones(1, 3, dtype=torch.bool), 1.0, 0.5)
    # δ = [1 + 0.2 − 0.5, 0 + 0.3 − 0.2, 2 − 0.3] = [0.7, 0.1, 1.7]; A2 = 1.7, A1 = 0.95, A0 = 1.175
    assert adv[0].tolist() == pytest.approx([1.175, 0.95, 1.7])
    assert ret[0].tolist() == pytest.approx([1.675, 1.15, 2.0])


@pytest.mark.parametrize("gae", [R.masked_gae, R.masked_gae_loop])
def test_gae_masked_values_do_not_change_advantages(gae):
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(4, 9, generator=g)
    values = torch.randn(4, 9, generator=g)
    mask = torch.rand(4, 9, generator=g) > 0.3
    mask[:, -2:] = False  # padding after the reply
    adv, ret = gae(rewards, values, mask, 1.0, 0.95)
    noisy = torch.where(mask, values, torch.randn(4, 9, generator=g) * 100)
    rewards_noisy = torch.where(mask, rewards, torch.randn(4, 9, generator=g) * 100)
    adv2, ret2 = gae(rewards_noisy, noisy, mask, 1.0, 0.95)
    assert torch.allclose(adv, adv2, atol=1e-5) and torch.allclose(ret, ret2, atol=1e-5)
    assert (adv[~mask] == 0).all()


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0)])
def test_gae_loop_equals_vectorised(gamma, lam):
    g = torch.Generator().manual_seed(1)
    rewards = torch.randn(5, 17, generator=g)
    values = torch.randn(5, 17, generator=g)
    mask = torch.rand(5, 17, generator=g) > 0.25
    mask[0] = False  # an empty row
    a1, r1 = R.masked_gae_loop(rewards, values, mask, gamma, lam)
    a2, r2 = R.masked_gae(rewards, values, mask, gamma, lam)
    assert torch.allclose(a1, a2, atol=1e-5) and torch.allclose(r1, r2, atol=1e-5)


def test_gae_prefix_mask_equals_gae_on_the_truncated_reply():
    g = torch.Generator().manual_seed(2)
    rewards, values = torch.randn(1, 10, generator=g), torch.randn(1, 10, generator=g)
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, :6] = True
    adv, _ = R.masked_gae(rewards, values, mask, 1.0, 0.95)
    short, _ = R.masked_gae(rewards[:, :6], values[:, :6], torch.ones(1, 6, dtype=torch.bool), 1.0, 0.95)
    assert torch.allclose(adv[:, :6], short, atol=1e-6)


def test_masked_whiten_and_mean():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[True, True, True, False]])
    w = R.masked_whiten(x, mask)
    assert w[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4) and w[0, 3] == 0
    assert R.masked_mean(x, mask).item() == pytest.approx(2.0)
    assert R.masked_mean(x, torch.zeros_like(mask)).item() == 0.0


def test_ppo_losses():
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 1.5, 1.0]]))  # ratios 1.5, 1.5, 1.0
    mask = torch.tensor([[True, True, False]])
    loss, stats = R.ppo_policy_loss(new, old, adv, mask, 0.2)
    # token 0: max(−1.5, −1.2) = −1.2 (clipped); token 1: max(1.5, 1.2) = 1.5; mean = 0.15
    assert loss.item() == pytest.approx(0.15)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    assert stats["approx_kl"].item() == pytest.approx(0.5 * torch.log(torch.tensor(1.5)).item() ** 2)
    vloss, vstats = R.ppo_value_loss(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2) > 0, 0.2
    )
    # token 0: max(0, (0.2 − 1)²) = 0.64; token 1: 1; ½·mean = 0.41
    assert vloss.item() == pytest.approx(0.41) and vstats["clipfrac"].item() == pytest.approx(0.5)


def test_explained_variance():
    mask = torch.ones(1, 4, dtype=torch.bool)
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert R.explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert R.explained_variance(torch.zeros(1, 4), returns, mask).item() == pytest.approx(0.0)
    assert torch.isnan(R.explained_variance(returns, torch.ones(1, 4), mask))


def test_rewards_imports_without_transformers():
    import subprocess
    import sys

    code = "import sys, trl_ext.rewards; assert 'transformers' not in sys.modules and 'trl' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# ---- released behaviour (trl_ext/released.py, docs/released_differences.md "PPO") -------------------------------


def test_value_mask_adds_the_state_after_the_last_token():
    mask = torch.tensor([[True, True, False, False], [True, True, True, True], [False, False, False, False]])
    assert value_mask_after_eos(mask).tolist() == [
        [True, True, True, False],  # the first pad after EOS
        [True, True, True, True],  # a reply filling the row has no state after it (the fork's too)
        [False, False, False, False],
    ]


@pytest.mark.parametrize("gae", [R.masked_gae, R.masked_gae_loop])
def test_gae_bootstrap_after_eos_hand_computed(gae):
    # reply of L = 3 tokens (the last is EOS), then the first pad whose value V = 0.4 the fork keeps; γ = 1, λ = 0.5
    rewards = torch.tensor([[1.0, 0.0, 2.0, 0.0]])  # the KL and score are 0 on pads
    values = torch.tensor([[0.5, 0.2, 0.3, 0.4]])
    mask = torch.tensor([[True, True, True, False]])
    adv, ret = gae(rewards, values.masked_fill(~mask, 0.0), mask, 1.0, 0.5)
    assert adv[0, :3].tolist() == pytest.approx([1.175, 0.95, 1.7])  # terminal EOS (test_gae_hand_computed)
    vmask = value_mask_after_eos(mask)
    adv, ret = gae(rewards, values, vmask, 1.0, 0.5)
    # A3 = 0 + 0 − 0.4 = −0.4; A2 = 2 + 0.4 − 0.3 + 0.5·(−0.4) = 1.9; A1 = 0.1 + 0.5·1.9 = 1.05;
    # A0 = 0.7 + 0.5·1.05 = 1.225: each exceeds the terminal one by γ(1−λ)(γλ)^(L−1−t)·V = 0.2, 0.1, 0.05
    assert adv[0].tolist() == pytest.approx([1.225, 1.05, 1.9, -0.4])
    assert ret[0].tolist() == pytest.approx([1.725, 1.25, 2.2, 0.0])  # the state after EOS is trained toward 0


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5)])
def test_gae_bootstrap_after_eos_equals_the_forks_full_row_gae(gamma, lam):
    # the fork runs plain GAE over the whole padded row with values zeroed after the first pad and rewards 0 on pads
    g = torch.Generator().manual_seed(3)
    lengths = [5, 8, 3]
    width = 8
    rewards, values = torch.randn(3, width, generator=g), torch.randn(3, width, generator=g)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    vmask = value_mask_after_eos(mask)
    r = rewards.masked_fill(~mask, 0.0)
    v = values.masked_fill(~vmask, 0.0)
    expected = torch.zeros(3, width)
    last = torch.zeros(3)
    for t in reversed(range(width)):
        next_v = v[:, t + 1] if t < width - 1 else torch.zeros(3)
        last = r[:, t] + gamma * next_v - v[:, t] + gamma * lam * last
        expected[:, t] = last
    adv, ret = R.masked_gae(r, v, vmask, gamma, lam)
    assert torch.allclose(adv, expected.masked_fill(~vmask, 0.0), atol=1e-5)
    # against the terminal-EOS advantages, the difference is γ(1−λ)(γλ)^(L−1−t)·V_L on the reply's tokens
    terminal, _ = R.masked_gae(r, v, mask, gamma, lam)
    for i, n in enumerate(lengths):
        if n == width:
            assert torch.allclose(adv[i], terminal[i], atol=1e-5)
            continue
        for t in range(n):
            bonus = gamma * (1 - lam) * (gamma * lam) ** (n - 1 - t) * v[i, n]
            assert adv[i, t].item() == pytest.approx((terminal[i, t] + bonus).item(), abs=1e-5)


def test_place_rewards_on_bracket_ids():
    # ids: 58 = `[`, 60 = `]`, 9 = other, 7 = a merged "\n[" token; a reply "[Search] a\n[Search] b\n[StopSearch]"
    #   tokens: [ S ] a \n[ S ] b [ Stop ] EOS pad
    ids = torch.tensor([58, 9, 60, 9, 58, 9, 60, 9, 58, 9, 60, 1, 0])
    out = place_rewards_on_bracket_ids(ids, torch.tensor([2.9, -0.1]), 0.1, open_id=58, close_id=60)
    # from the end: the stop bonus on the last `]` (10); the last action's reward on the last `[` (8), the first
    # action's on the `[` before it (4)
    expected = [0.0] * 13
    expected[10], expected[8], expected[4] = 0.1, -0.1, 2.9
    assert out.tolist() == pytest.approx(expected)
    # the tokenizer merged the second `[` with the newline: the first action's reward lands on the reply's first `[`
    merged = ids.clone()
    merged[4] = 7
    out = place_rewards_on_bracket_ids(merged, torch.tensor([2.9, -0.1]), None, 58, 60, length=14)
    assert out.shape == (14,) and out[8].item() == pytest.approx(-0.1) and out[0].item() == pytest.approx(2.9)
    assert out[10] == 0  # no stop tag: no stop bonus
    # character offsets put the rewards where the actions end, merged token or not
    ends = torch.tensor([1, 7, 8, 10, 12, 18, 19, 21, 22, 26, 27, 27, 27])  # end offset of each token
    chars = torch.tensor([11, 21, 26])  # `[` of the second action, `[` of [StopSearch], its `]`
    placed = R.place_rewards_on_tokens(ends, chars, torch.tensor([2.9, -0.1, 0.1]))
    assert placed[4].item() == pytest.approx(2.9) and placed[8].item() == pytest.approx(-0.1)
