"""Rewards, returns and PPO losses of the session-level Crawler PPO (DESIGN §1.3), as pure torch functions.

[pure] torch only: no model, tokenizer, file or network. Every function documents its shapes and the equation it
implements; the released trainer's variants (post-EOS value bootstrap, reward placement by token id) are in
``trl_ext/released.py``.

Notation (paper §3.2, DESIGN §1.3): a crawler *session* is one reply to a search or expand prompt; an action a_t of
the reply brings n_t new papers p_i and earns

    r(a_t) = clip( α · Σ_i I(q, p_i) − c(a_t) + γ1 · Σ_{i ≤ K} V(S_{q, p_i}),  −c, 5 )

where I = 1 when p_i is in the answer set or the Selector scores it > 0.5 (repeats in a reply count once), c is the
action cost and V(S_{q,p_i}) the value of the expand session the paper opens (the K best new papers). A stop action
earns +c. The per-token reward adds the KL penalty −β (log π − log π_sft); advantages are GAE(γ0, λ) over the tokens
the crawler generated (``action_mask``); returns = advantages + values.
"""

from __future__ import annotations

import torch

__all__ = [
    "action_rewards",
    "place_rewards_on_tokens",
    "kl_penalty",
    "token_rewards",
    "masked_gae",
    "masked_gae_loop",
    "masked_mean",
    "masked_whiten",
    "ppo_policy_loss",
    "ppo_value_loss",
    "explained_variance",
]


def action_rewards(
    n_relevant: torch.Tensor,
    alpha: torch.Tensor | float,
    cost: torch.Tensor | float,
    session_values: torch.Tensor | float = 0.0,
    gamma1: float = 0.0,
    clip_min: torch.Tensor | float | None = None,
    clip_max: float = 5.0,
) -> torch.Tensor:
    """Reward of each action: ``clip(α·n − c + γ1·ΣV, clip_min, clip_max)``.

    Shapes: ``n_relevant`` (A,) relevant new papers per action (repeats within a reply already removed);
    ``alpha``, ``cost``, ``session_values`` (the sum of V over the sessions the action opens), ``clip_min`` are (A,)
    or scalars. Returns (A,) float.

    ``clip_min`` defaults to ``−cost``. As in the released trainer (hyc2026/trl ``custom_agent/utils.py``), the
    clip applies to the whole action reward, value bootstrap included.
    """
    n_relevant = torch.as_tensor(n_relevant, dtype=torch.float32)
    alpha = torch.as_tensor(alpha, dtype=torch.float32)
    cost = torch.as_tensor(cost, dtype=torch.float32)
    session_values = torch.as_tensor(session_values, dtype=torch.float32)
    raw = alpha * n_relevant - cost + gamma1 * session_values
    low = -cost if clip_min is None else torch.as_tensor(clip_min, dtype=torch.float32)
    return torch.minimum(torch.maximum(raw, low.expand_as(raw)), torch.full_like(raw, clip_max))


def place_rewards_on_tokens(
    token_char_ends: torch.Tensor, reward_chars: torch.Tensor, reward_values: torch.Tensor, length: int | None = None
) -> torch.Tensor:
    """Scatter rewards given at character positions of a decoded reply onto the tokens holding those characters.

    Shapes: ``token_char_ends`` (T,) non-decreasing, the end offset (exclusive) in the decoded reply of each
    generated token; ``reward_chars`` (K,) character positions (e.g. the ``[`` that ends an action, the ``]`` of a
    stop tag); ``reward_values`` (K,). Returns (length or T,) rewards: token t receives the rewards of the characters
    c with ``ends[t-1] <= c < ends[t]`` (several rewards on one token add up). A character past the decoded text
    falls on the last token.

    This replaces the released placement on hard-coded token ids (58 ``[``, 60 ``]``,
    ``trl_ext.released.place_rewards_on_bracket_ids``), which breaks when the tokenizer merges ``[`` with a neighbour
    (``\\n[``).
    """
    length = token_char_ends.numel() if length is None else length
    out = torch.zeros(length, dtype=torch.float32)
    if reward_chars.numel() == 0 or token_char_ends.numel() == 0:
        return out
    idx = torch.searchsorted(token_char_ends.to(torch.long), reward_chars.to(torch.long), right=True)
    idx = idx.clamp(max=token_char_ends.numel() - 1)
    return out.index_add_(0, idx, reward_values.to(torch.float32))


def kl_penalty(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kl_coef: float, action_mask: torch.Tensor
) -> torch.Tensor:
    """Per-token KL penalty ``−β (log π(y_t) − log π_sft(y_t))`` on generated tokens, 0 elsewhere.

    Shapes: all (B, T); ``action_mask`` bool, True on tokens the crawler generated. Returns (B, T).
    """
    return torch.where(action_mask, -kl_coef * (logprobs - ref_logprobs), torch.zeros_like(logprobs))


def token_rewards(scores: torch.Tensor, logprobs, ref_logprobs, kl_coef: float, action_mask) -> torch.Tensor:
    """``r_t = score_t − β (log π − log π_sft)`` on generated tokens; (B, T) each, returns (B, T)."""
    return torch.where(action_mask, scores, torch.zeros_like(scores)) + kl_penalty(
        logprobs, ref_logprobs, kl_coef, action_mask
    )


def masked_gae_loop(
    rewards: torch.Tensor, values: torch.Tensor, action_mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference GAE over the kept tokens only, as a loop over time (the differential-test reference).

    Masked tokens are skipped: the next value and the running advantage carry across them unchanged (verl
    ``compute_gae_advantage_return`` with a response mask), and the state after the last kept token is terminal
    (V = 0: a session's continuation is already in the action rewards through γ1·ΣV).

        δ_t = r_t + γ V_{t'} − V_t,   A_t = δ_t + γ λ A_{t'}   (t' = next kept token)

    Shapes: (B, T) each; ``action_mask`` bool. Returns ``(advantages, returns)`` (B, T), 0 on masked tokens.
    """
    mask = action_mask.to(values.dtype)
    next_value = torch.zeros_like(values[:, 0])
    last_gae = torch.zeros_like(values[:, 0])
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        gae = delta + gamma * lam * last_gae
        m = mask[:, t]
        last_gae = m * gae + (1 - m) * last_gae
        next_value = m * values[:, t] + (1 - m) * next_value
        advantages[:, t] = m * gae
    return advantages, (advantages + values) * mask


def masked_gae(
    rewards: torch.Tensor, values: torch.Tensor, action_mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorised GAE over the kept tokens; equal to ``masked_gae_loop``.

    Kept tokens are packed to the left (their order preserved), so that with k the rank of a kept token,
    ``A_k = Σ_{j ≥ k} (γλ)^{j−k} δ_j`` is one (T, T) matrix product; the results are scattered back.
    Shapes: (B, T) each; returns ``(advantages, returns)`` (B, T), 0 on masked tokens.
    """
    b, t = values.shape
    mask = action_mask.bool()
    rank = mask.long().cumsum(1) - 1  # position of each kept token in the packed sequence
    rank = torch.where(mask, rank, torch.full_like(rank, t))  # masked tokens go to a spill column
    packed_r = torch.zeros(b, t + 1, dtype=values.dtype).scatter_(1, rank, torch.where(mask, rewards, 0.0))
    packed_v = torch.zeros(b, t + 1, dtype=values.dtype).scatter_(1, rank, torch.where(mask, values, 0.0))
    packed_r, packed_v = packed_r[:, :t], packed_v[:, :t]
    lengths = mask.sum(1, keepdim=True)
    pos = torch.arange(t)
    next_v = torch.cat([packed_v[:, 1:], torch.zeros(b, 1, dtype=values.dtype)], 1)
    next_v = torch.where(pos[None, :] + 1 < lengths, next_v, 0.0)
    delta = torch.where(pos[None, :] < lengths, packed_r + gamma * next_v - packed_v, 0.0)
    diff = pos[None, :] - pos[:, None]  # (k, j) -> j - k
    discount = torch.where(diff >= 0, (gamma * lam) ** diff.clamp(min=0).to(values.dtype), 0.0)
    packed_adv = delta @ discount.T
    advantages = torch.gather(torch.cat([packed_adv, torch.zeros(b, 1, dtype=values.dtype)], 1), 1, rank)
    advantages = torch.where(mask, advantages, 0.0)
    return advantages, torch.where(mask, advantages + values, 0.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``mask`` (same shape); 0 when the mask is empty."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x − mean) / std`` over the kept entries (trl ``masked_whiten``, unbiased variance); 0 elsewhere."""
    mean = masked_mean(x, mask)
    n = mask.to(x.dtype).sum()
    var = masked_mean((x - mean) ** 2, mask) * (n / (n - 1).clamp(min=1.0))
    return torch.where(mask.bool(), (x - mean) * torch.rsqrt(var + eps), torch.zeros_like(x))


def ppo_policy_loss(
    new_logprobs: torch.Tensor,
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    action_mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate ``E[max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε))]``, ρ = exp(log π_new − log π_old), over kept tokens.

    Shapes: (B, T) each. Returns the scalar loss and stats ``approx_kl`` (½ E[(log ρ)²]), ``clipfrac``, ``ratio``.
    """
    log_ratio = torch.where(action_mask, new_logprobs - logprobs, 0.0)
    ratio = torch.exp(log_ratio)
    pg_losses = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), action_mask)
    with torch.no_grad():
        stats = {
            "approx_kl": 0.5 * masked_mean(log_ratio**2, action_mask),
            "clipfrac": masked_mean((pg_losses2 > pg_losses).float(), action_mask),
            "ratio": masked_mean(ratio, action_mask),
        }
    return pg_loss, stats


def ppo_value_loss(
    vpred: torch.Tensor, values: torch.Tensor, returns: torch.Tensor, action_mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss ``½ E[max((V − R)², (clip(V, V_old ± ε_v) − R)²)]`` over kept tokens; (B, T) each."""
    vpred_clipped = torch.clamp(vpred, values - cliprange_value, values + cliprange_value)
    vf_losses1 = (vpred - returns) ** 2
    vf_losses2 = (vpred_clipped - returns) ** 2
    vf_loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), action_mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((vf_losses2 > vf_losses1).float(), action_mask)}
    return vf_loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 − Var[R − V] / Var[R]`` over kept tokens (cleanrl); NaN when the returns have no variance."""
    var_r = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    diff = returns - values
    var_d = masked_mean((diff - masked_mean(diff, mask)) ** 2, mask)
    return torch.where(var_r > 0, 1 - var_d / var_r, torch.tensor(float("nan")))
