"""GRPO: advantages and loss against hand-computed values; a CPU smoke run on a tiny model."""

from __future__ import annotations

import math

import pytest

from tests import extras

torch = pytest.importorskip("torch", reason=extras.LOCAL)

from workflows.drqa.training.grpo import GRPOConfig, GRPOTrainer, group_advantages, grpo_loss  # noqa: E402

ln = math.log


def test_group_advantages_hand_computed() -> None:
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0]), 4, eps=0.0)
    # group 1: mean 0.5, sample std sqrt(4 * 0.25 / 3) = 0.57735 -> +-0.866025
    assert torch.allclose(adv[:4], torch.tensor([0.866025, -0.866025, -0.866025, 0.866025]), atol=1e-5)
    # group 2: all equal -> no signal (and no division by zero with eps)
    assert torch.equal(group_advantages(torch.tensor([2.0, 2.0]), 2), torch.zeros(2))
    assert torch.all(adv[4:] == 0)
    with pytest.raises(ValueError):
        group_advantages(torch.ones(5), 4)


def test_grpo_loss_hand_computed() -> None:
    # Sequence 1 (A=+1): token 1 ratio 0.5/0.4 = 1.25 -> clipped to 1.2 (min picks 1.2), KL 0;
    #   token 2 ratio 1, ref/theta = 0.5 -> KL = 0.5 - ln 0.5 - 1 = 0.193147, beta 0.1.
    #   mean = (1.2 + (1.0 - 0.0193147)) / 2 = 1.09034265
    # Sequence 2 (A=-1): token 1 ratio 0.2/0.1 = 2 -> min(-2, -1.2) = -2, KL 0; token 2 masked
    #   (extreme values that would give inf/nan if they leaked in). mean = -2
    # loss = -(1.09034265 - 2) / 2 = 0.454828675
    logp = torch.tensor([[ln(0.5), ln(0.5)], [ln(0.2), 0.0]])
    old = torch.tensor([[ln(0.4), ln(0.5)], [ln(0.1), -80.0]])
    ref = torch.tensor([[ln(0.5), ln(0.25)], [ln(0.2), 90.0]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, stats = grpo_loss(logp, old, ref, adv, mask, clip_eps=0.2, kl_beta=0.1)
    assert loss.item() == pytest.approx(0.454828675, abs=1e-6)
    assert stats["kl"].item() == pytest.approx(0.193147 / 3, abs=1e-6)
    assert stats["clip_frac"].item() == pytest.approx(2 / 3, abs=1e-6)


def test_grpo_gradient_on_policy_is_minus_advantage_over_length() -> None:
    # With old = theta (first update) and ref = theta, d loss / d logp_t = -A_i / (|o_i| * B).
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -0.9]], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss, _ = grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, clip_eps=0.2, kl_beta=0.5)
    loss.backward()
    expected = torch.tensor([[-2 / 6, -2 / 6, -2 / 6], [1 / 4, 1 / 4, 0.0]])
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def _tiny_model_and_tokenizer():  # type: ignore[no-untyped-def]
    from workflows.drqa.training.tiny import tiny_model_and_tokenizer

    return tiny_model_and_tokenizer(seed=0)


def _prob_of(model, tok, prompts, letter: str) -> float:  # type: ignore[no-untyped-def]
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    pos = (enc["attention_mask"].cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(**enc, position_ids=pos).logits[:, -1, :]
    return float(logits.softmax(-1)[:, tok.convert_tokens_to_ids(letter)].mean())


def test_grpo_smoke_tiny_model_learns_the_rewarded_label() -> None:
    from workflows.drqa.training.judge import label_reward

    model, tok = _tiny_model_and_tokenizer()
    prompts = ["q1 ab?>", "q2 cd?>", "q3 ef?>", "q4 gh?>"]
    cfg = GRPOConfig(group_size=16, prompts_per_step=4, learning_rate=1e-2, kl_beta=0.01, max_new_tokens=1,
                     num_inner_updates=2)
    trainer = GRPOTrainer(model, tok, lambda text, gold: label_reward(text, gold), cfg)
    before = _prob_of(model, tok, prompts, "C")
    torch.manual_seed(1)
    stats = [trainer.step(prompts, ["correct-concise"] * 4) for _ in range(10)]
    after = _prob_of(model, tok, prompts, "C")
    assert all(math.isfinite(s.loss) for s in stats)
    assert after > 3 * before and after > 0.3, (before, after)
    early = sum(s.reward_mean for s in stats[:3]) / 3
    late = sum(s.reward_mean for s in stats[-3:]) / 3
    assert late > early
    assert stats[-1].kl_mean > 0  # the policy moved away from the frozen reference
    ref_p = _prob_of(trainer.reference, tok, prompts, "C")
    assert ref_p == pytest.approx(before)  # and the reference did not move
