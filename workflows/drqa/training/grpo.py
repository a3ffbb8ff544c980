"""Group Relative Policy Optimisation (GRPO) in plain torch.

For each prompt the policy samples a group of G completions; each gets a scalar reward; the
advantage of a completion is its reward normalised within its group,
``A_i = (r_i - mean(r)) / (std(r) + eps)`` (sample std, as DeepSeekMath/TRL). The objective per
completion token t of completion i is

    min(rho * A_i, clip(rho, 1 - eps_clip, 1 + eps_clip) * A_i) - beta * KL_t
    rho  = pi_theta(o_t | ...) / pi_old(o_t | ...)
    KL_t = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1       (the k3 estimator, >= 0)

averaged over each completion's tokens, then over completions; the loss is its negative.
``pi_old`` is the policy that sampled (equal to pi_theta on the first update of a batch);
``pi_ref`` is a frozen copy of the starting model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "GRPOConfig",
    "GRPOTrainer",
    "StepStats",
    "completion_logprobs",
    "group_advantages",
    "grpo_loss",
]


@dataclass(frozen=True)
class GRPOConfig:
    """Hyperparameters of a GRPO run."""

    group_size: int = 8
    """Completions sampled per prompt (G)."""
    prompts_per_step: int = 8
    """Prompts per optimisation step (the batch holds prompts_per_step * group_size samples)."""
    clip_eps: float = 0.2
    """Ratio clipping range (PPO's epsilon)."""
    kl_beta: float = 0.04
    """Weight of the KL penalty to the reference model."""
    learning_rate: float = 1e-6
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    num_inner_updates: int = 1
    """Gradient steps per sampled batch (>1 makes the ratio differ from 1 and clipping bite)."""
    max_new_tokens: int = 8
    """Completion length cap while sampling."""
    temperature: float = 1.0
    """Sampling temperature."""
    adv_eps: float = 1e-4
    """Added to the group std before dividing."""
    micro_batch_size: int = 64
    """Sequences per forward pass when computing log-probabilities."""


@dataclass(frozen=True)
class StepStats:
    """What one optimisation step saw."""

    loss: float
    """Loss of the last inner update."""
    reward_mean: float
    """Mean reward of the sampled completions."""
    kl_mean: float
    """Mean per-token k3 KL to the reference."""
    clip_fraction: float
    """Share of completion tokens whose ratio was clipped (last inner update)."""
    completion_tokens: float
    """Mean completion length in tokens."""
    num_zero_std_groups: int
    """Groups whose rewards were all equal (they carry no learning signal)."""


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """Rewards (N * G,) in group-contiguous order -> advantages normalised within each group."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size).float()
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
    centred = grouped - mean
    # A group whose rewards are all equal carries no signal: exactly 0, whatever eps is.
    return torch.where(std > 0, centred / (std + eps), torch.zeros_like(centred)).view(-1)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float,
    kl_beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss over (B, T) per-token log-probabilities; ``mask`` marks completion tokens.

    Returns the scalar loss and detached statistics (``kl``: mean per-token KL, ``clip_frac``).
    Masked positions never contribute, even when their log-probabilities are extreme.
    """
    m = mask.bool()
    ratio = torch.exp(torch.where(m, logp - old_logp, torch.zeros_like(logp)))
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    surrogate = torch.minimum(unclipped, clipped)
    log_ref_ratio = torch.where(m, ref_logp - logp, torch.zeros_like(logp))
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1.0
    per_token = torch.where(m, surrogate - kl_beta * kl, torch.zeros_like(logp))
    lengths = m.sum(dim=1).clamp(min=1)
    per_seq = per_token.sum(dim=1) / lengths
    loss = -per_seq.mean()
    num_tokens = m.sum().clamp(min=1)
    stats = {
        "kl": (torch.where(m, kl, torch.zeros_like(kl)).sum() / num_tokens).detach(),
        "clip_frac": (((ratio - 1.0).abs() > clip_eps) & m).sum().detach() / num_tokens,
    }
    return loss, stats


def completion_logprobs(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_completion: int
) -> torch.Tensor:
    """Log-probabilities (B, num_completion) of the last ``num_completion`` tokens of each row.

    Rows are left-padded prompts followed by completions; positions are counted from the first
    real token so they match what ``generate`` used.
    """
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=num_completion + 1,
        use_cache=False,
    )
    logits = out.logits[:, -(num_completion + 1) : -1, :].float()
    targets = input_ids[:, -num_completion:]
    return torch.gather(F.log_softmax(logits, dim=-1), 2, targets.unsqueeze(-1)).squeeze(-1)


RewardFn = Callable[[str, Any], float]
"""reward(completion_text, target) -> scalar reward."""


class GRPOTrainer:
    """Samples groups, scores them, and takes GRPO steps on ``policy``.

    ``tokenizer`` is a Hugging Face tokenizer (pad and eos tokens set); prompts are final
    strings (chat template already applied by the caller).
    """

    def __init__(
        self,
        policy: Any,
        tokenizer: Any,
        reward_fn: RewardFn,
        config: GRPOConfig,
        *,
        reference: Any | None = None,
        device: str | torch.device = "cpu",
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.policy = policy
        self.tokenizer = tokenizer
        self.reward_fn = reward_fn
        self.config = config
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype
        self.reference = reference if reference is not None else copy.deepcopy(policy)
        self.reference.eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            [p for p in policy.parameters() if p.requires_grad],
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def sample(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """G completions per prompt: (sequences, attention mask, completion mask, texts)."""
        cfg, tok = self.config, self.tokenizer
        tok.padding_side = "left"
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        ids = enc["input_ids"].repeat_interleave(cfg.group_size, dim=0)
        attn = enc["attention_mask"].repeat_interleave(cfg.group_size, dim=0)
        self.policy.eval()
        with self._autocast():
            out = self.policy.generate(
                input_ids=ids,
                attention_mask=attn,
                do_sample=True,
                temperature=cfg.temperature,
                top_p=1.0,
                top_k=0,
                repetition_penalty=1.0,
                max_new_tokens=cfg.max_new_tokens,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        completion = out[:, ids.shape[1] :]
        comp_mask = torch.ones_like(completion)
        if tok.eos_token_id is not None:
            is_eos = completion == tok.eos_token_id
            # Keep tokens up to and including the first eos; everything after is padding.
            after_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
            comp_mask = (~after_eos).long()
        texts = tok.batch_decode(completion * comp_mask + tok.pad_token_id * (1 - comp_mask), skip_special_tokens=True)
        full_attn = torch.cat([attn, comp_mask], dim=1)
        return out, full_attn, comp_mask, texts

    def _logprobs(self, model: Any, seqs: torch.Tensor, attn: torch.Tensor, n: int) -> torch.Tensor:
        parts = []
        mb = max(self.config.micro_batch_size, 1)
        for i in range(0, seqs.shape[0], mb):
            with self._autocast():
                parts.append(completion_logprobs(model, seqs[i : i + mb], attn[i : i + mb], n))
        return torch.cat(parts, dim=0)

    def step(self, prompts: Sequence[str], targets: Sequence[Any]) -> StepStats:
        """One GRPO step on ``prompts`` (targets are passed to the reward function)."""
        cfg = self.config
        seqs, attn, comp_mask, texts = self.sample(prompts)
        n = comp_mask.shape[1]
        rewards = torch.tensor(
            [self.reward_fn(t, targets[i // cfg.group_size]) for i, t in enumerate(texts)],
            dtype=torch.float32,
            device=self.device,
        )
        adv = group_advantages(rewards, cfg.group_size, cfg.adv_eps)
        grouped = rewards.view(-1, cfg.group_size)
        zero_std = int((grouped.max(dim=1).values == grouped.min(dim=1).values).sum())
        with torch.no_grad():
            ref_logp = self._logprobs(self.reference, seqs, attn, n)
            old_logp = self._logprobs(self.policy, seqs, attn, n) if cfg.num_inner_updates > 1 else None
        self.policy.train()
        loss_val, kl_val, clip_val = math.nan, math.nan, 0.0
        for _ in range(max(cfg.num_inner_updates, 1)):
            self.optimizer.zero_grad(set_to_none=True)
            total_seqs = seqs.shape[0]
            mb = max(cfg.micro_batch_size, 1)
            loss_sum = 0.0
            kl_sum = 0.0
            clip_sum = 0.0
            for i in range(0, total_seqs, mb):
                sl = slice(i, i + mb)
                with self._autocast():
                    logp = completion_logprobs(self.policy, seqs[sl], attn[sl], n)
                old = old_logp[sl] if old_logp is not None else logp.detach()
                loss, stats = grpo_loss(
                    logp, old, ref_logp[sl], adv[sl], comp_mask[sl], clip_eps=cfg.clip_eps, kl_beta=cfg.kl_beta
                )
                # Micro-batches are weighted by their share of sequences, so the sum equals the
                # full-batch loss (a mean over sequences).
                weight = (min(i + mb, total_seqs) - i) / total_seqs
                (loss * weight).backward()
                loss_sum += float(loss.detach()) * weight
                kl_sum += float(stats["kl"]) * weight
                clip_sum += float(stats["clip_frac"]) * weight
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            loss_val, kl_val, clip_val = loss_sum, kl_sum, clip_sum
        return StepStats(
            loss=loss_val,
            reward_mean=float(rewards.mean()),
            kl_mean=kl_val,
            clip_fraction=clip_val,
            completion_tokens=float(comp_mask.sum(dim=1).float().mean()),
            num_zero_std_groups=zero_std,
        )
