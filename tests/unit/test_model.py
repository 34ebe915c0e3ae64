import math
from pathlib import Path

import pytest
import torch

from misr.config.params import load_params
from misr.model import MISR, InputSpec, LateFusion, build_model, gaussian, invariance, loss_terms, loss_weights, total_loss
from misr.model.encoders import SequenceEncoder, TokenEncoder

REPO = Path(__file__).resolve().parents[2]
SPEC = InputSpec(audio_dim=5, visual_dim=7, text_kind="tokens", vocab_size=30)


# The hand-computed expectations below are for the representation environments and a 2-epoch linear
# warm-up to weight 10; pinned here so that they do not follow params.yaml's defaults (groups, weight 1).
PINNED = [
    "model.environments=z_plus_unimodal",
    "model.fusion=softmax",
    "model.invariance.weight=10",
    "model.invariance.warmup_epochs=2",
    "model.invariance.schedule=linear",
    "model.kl.prior_weight=0.01",
    "model.kl.pairwise_weight=0.01",
]


def model_cfg(*overrides):
    return load_params(REPO / "params.yaml", ["model.d_model=16", "model.n_heads=2", "model.latent_dim=8", *PINNED, *overrides]).model


def batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    text_len = torch.tensor([5, 3, 6, 2][:b])
    mask = (torch.arange(6)[None] < text_len[:, None]).long()
    audio_len = torch.tensor([7, 2, 4, 1][:b])
    visual_len = torch.tensor([3, 9, 9, 5][:b])
    return {
        "text_ids": torch.randint(1, 30, (b, 6), generator=g) * mask,
        "text_mask": mask,
        "audio": torch.randn(b, 7, 5, generator=g) * (torch.arange(7)[None, :, None] < audio_len[:, None, None]),
        "audio_lengths": audio_len,
        "visual": torch.randn(b, 9, 7, generator=g) * (torch.arange(9)[None, :, None] < visual_len[:, None, None]),
        "visual_lengths": visual_len,
        "y": torch.tensor([1.0, -2.0, 0.4, 2.8][:b]),
    }


# ---------------------------------------------------------------------------------- encoders


def test_sequence_encoder_shape_and_padding_invariance():
    torch.manual_seed(0)
    enc = SequenceEncoder(5, 16, n_heads=2, n_layers=2, n_summary=2, dropout=0.1).eval()
    x = torch.randn(3, 6, 5)
    lengths = torch.tensor([6, 2, 4])
    out = enc(x, lengths)
    assert out.shape == (3, 16)
    # garbage in the padding, or more padding, changes nothing
    noisy = x.clone()
    noisy[1, 2:] = 1e3
    longer = torch.cat([x, torch.randn(3, 5, 5)], dim=1)
    assert torch.allclose(enc(noisy, lengths), out, atol=1e-5)
    assert torch.allclose(enc(longer, lengths), out, atol=1e-5)
    # but real frames do matter
    changed = x.clone()
    changed[1, 0] += 1.0
    assert not torch.allclose(enc(changed, lengths)[1], out[1], atol=1e-4)


def test_token_encoder_uses_the_mask():
    torch.manual_seed(0)
    enc = TokenEncoder(30, 16, n_heads=2, n_layers=1, n_summary=1, dropout=0.0).eval()
    ids = torch.tensor([[1, 5, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    out = enc(ids, mask)
    assert out.shape == (1, 16)
    assert torch.allclose(enc(torch.tensor([[1, 5, 7, 9, 9]]), mask), out, atol=1e-6)


def test_bert_text_encoder_runs_the_shipped_minilm_frozen():
    from misr.model.encoders import BertTextEncoder
    from misr.shipped import minilm_dir

    enc = BertTextEncoder(minilm_dir(), finetune=False, d_model=16, n_heads=2, n_layers=1, n_summary=1, dropout=0.0)
    ids = torch.tensor([[101, 2307, 3185, 102], [101, 6659, 102, 0]])
    mask = (ids != 0).long()
    out = enc(ids, mask)
    assert out.shape == (2, 16)
    out.sum().backward()
    assert all(p.grad is None for p in enc.bert.parameters())
    assert enc.encoder.proj.weight.grad is not None
    enc.train()
    assert not enc.bert.training  # frozen encoder keeps dropout off


# ---------------------------------------------------------------------------------- gaussian


def test_kl_to_standard_normal_hand_value():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * (1 + 1 - 1 - 0) + 0.5 * (0 + 2 - 1 - ln 2)
    expected = 0.5 + 0.5 * (1 - math.log(2.0))
    assert gaussian.kl_to_standard_normal(mu, logvar).item() == pytest.approx(expected)


def test_kl_between_hand_value_and_pairwise_symmetry():
    mu_p, lv_p = torch.zeros(1, 1), torch.zeros(1, 1)
    mu_q, lv_q = torch.ones(1, 1), torch.full((1, 1), math.log(2.0))
    # KL(N(0,1) || N(1,2)) = 0.5 * (ln 2 + (1 + 1) / 2 - 1) = 0.5 ln 2
    assert gaussian.kl_between(mu_p, lv_p, mu_q, lv_q).item() == pytest.approx(0.5 * math.log(2.0))
    # KL(N(1,2) || N(0,1)) = 0.5 * (0 - ln 2 + (2 + 1) / 1 - 1) = 0.5 * (2 - ln 2)
    back = 0.5 * (2 - math.log(2.0))
    g = {"a": (mu_p, lv_p), "b": (mu_q, lv_q)}
    assert gaussian.pairwise_kl(g).item() == pytest.approx((0.5 * math.log(2.0) + back) / 2)
    same = {"a": (mu_q, lv_q), "b": (mu_q.clone(), lv_q.clone())}
    assert gaussian.pairwise_kl(same).item() == pytest.approx(0.0, abs=1e-7)


def test_head_clamps_logvar_and_reparameterisation():
    head = gaussian.GaussianHead(4, 3, -2.0, 2.0)
    with torch.no_grad():
        head.logvar.bias.fill_(50.0)
    mu, lv = head(torch.randn(5, 4))
    assert lv.max().item() == 2.0
    assert torch.equal(gaussian.reparameterize(mu, lv, sample=False), mu)
    torch.manual_seed(0)
    mu = torch.full((20000, 1), 1.5)
    draws = gaussian.reparameterize(mu, torch.full((20000, 1), math.log(0.25)), sample=True)
    assert draws.mean().item() == pytest.approx(1.5, abs=0.02)
    assert draws.std().item() == pytest.approx(0.5, abs=0.02)


def test_precision_fusion_weights():
    z = {"t": torch.tensor([[1.0]]), "a": torch.tensor([[3.0]])}
    equal = {"t": torch.zeros(1, 1), "a": torch.zeros(1, 1)}
    fused, w = gaussian.precision_fusion(z, equal)
    assert fused.item() == pytest.approx(2.0) and w.shape == (2, 1, 1)
    # text far more certain: sigma_t = e^-4, sigma_a = 1 -> weights softmax(e^4, 1)
    fused, w = gaussian.precision_fusion(z, {"t": torch.full((1, 1), -8.0), "a": torch.zeros(1, 1)})
    w_t = math.exp(math.exp(4)) / (math.exp(math.exp(4)) + math.e)
    assert w[0].item() == pytest.approx(w_t)
    assert fused.item() == pytest.approx(1.0 * w_t + 3.0 * (1 - w_t))


# ---------------------------------------------------------------------------------- invariance


def test_product_of_experts_hand_values_and_an_absent_expert_weighs_exactly_zero():
    mu_a, mu_b = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 2.0]])
    lv_a, lv_b = torch.zeros(1, 2), torch.full((1, 2), math.log(1 / 3))  # variances 1 and 1/3: precisions 1 and 3
    mu, logvar, weights = gaussian.product_of_experts({"a": (mu_a, lv_a), "b": (mu_b, lv_b)})
    assert torch.allclose(mu, torch.tensor([[2.5, 1.0]]))  # (1 * mu_a + 3 * mu_b) / 4
    assert torch.allclose(logvar, torch.full((1, 2), -math.log(4.0)))
    assert torch.allclose(weights[:, 0, 0], torch.tensor([0.25, 0.75]))
    mu, logvar, weights = gaussian.product_of_experts({"a": (mu_a, lv_a), "b": (mu_b, lv_b)}, torch.tensor([[True], [False]]))
    assert torch.equal(weights[1], torch.zeros(1, 2)) and torch.equal(mu, mu_a) and torch.allclose(logvar, lv_a)
    z, w = gaussian.precision_fusion({"a": mu_a, "b": mu_b}, {"a": lv_a, "b": lv_b}, torch.tensor([[False], [True]]))
    assert torch.equal(w[0], torch.zeros(1, 2)) and torch.equal(z, mu_b)


@pytest.mark.parametrize("fusion", ["poe", "softmax"])
def test_a_removed_modality_has_weight_zero_and_no_say_in_the_prediction(fusion):
    from misr.training.batches import zero_modality

    torch.manual_seed(0)
    model = MISR(model_cfg(f"model.fusion={fusion}"), SPEC).eval()
    rows = torch.tensor([False, True, False, True])
    removed = zero_modality(batch(), "visual", rows)
    out = model(removed)
    assert torch.equal(out["fusion_weights"][2, rows], torch.zeros(2, 8))
    assert (out["fusion_weights"][2, ~rows] > 0).all()
    # the joint representation of those clips ignores whatever sits in the removed modality's place
    other = dict(removed, visual=torch.randn_like(removed["visual"]) * 5)
    again = model(other)
    assert torch.allclose(again["pred"][rows], out["pred"][rows], atol=1e-6)
    assert not torch.allclose(again["pred"][~rows], out["pred"][~rows], atol=1e-4)


def test_vrex_zero_for_equal_risks_positive_otherwise():
    assert invariance.vrex_penalty(torch.tensor([0.7, 0.7, 0.7])).item() == 0.0
    # population variance of [1, 2, 3, 6] = mean([-2, -1, 0, 3]^2) = 14 / 4
    assert invariance.vrex_penalty(torch.tensor([1.0, 2.0, 3.0, 6.0])).item() == pytest.approx(3.5)


def huber(delta=1.0):
    from misr.config.model import LossConfig

    return LossConfig(kind="pseudo_huber", delta=delta)


def test_pseudo_huber_hand_values_and_l1_beyond_delta():
    r = torch.tensor([0.0, 1.0, -3.0, 100.0])
    loss = invariance.clip_loss(r, huber(1.0))
    assert torch.allclose(loss, torch.tensor([0.0, math.sqrt(2) - 1, math.sqrt(10) - 1, math.sqrt(10001) - 1]))
    slope = invariance.clip_loss_slope(r, huber(1.0))
    assert torch.allclose(slope, torch.tensor([0.0, 1 / math.sqrt(2), -3 / math.sqrt(10), 100 / math.sqrt(10001)]))
    assert abs(slope[-1].item() - 1.0) < 1e-4  # the slope of L1 far from 0: the same minimiser, the median
    assert torch.equal(invariance.clip_loss(r, None), r.abs()) and torch.equal(invariance.clip_loss_slope(r, None), r.sign())


def test_irmv1_hand_value_zero_and_positive():
    y = torch.tensor([1.0, 1.0])
    # d/dw mean loss(w*p - y) at w=1 = mean(loss'(p - y) p); residuals 1 and 3 with delta 1:
    # (2 / sqrt(2) + 4 * 3 / sqrt(10)) / 2, squared
    grad = (2 / math.sqrt(2) + 12 / math.sqrt(10)) / 2
    assert invariance.irmv1_penalty(torch.tensor([[2.0, 4.0]]), y, huber(1.0)).item() == pytest.approx(grad**2)
    # two environments with equal risks, one over- and one under-predicting: positive
    preds = torch.tensor([[1.5, 1.5], [0.5, 0.5]])
    risks = invariance.environment_risks(preds, y, huber(1.0))
    assert risks[0] == pytest.approx(risks[1].item())
    slope = 0.5 / math.sqrt(1.25)
    assert invariance.irmv1_penalty(preds, y, huber(1.0)).item() == pytest.approx((slope * 1.5) ** 2 + (slope * 0.5) ** 2)
    # perfect predictions in every environment: equal (zero) risks and no gradient to exploit
    assert invariance.irmv1_penalty(torch.stack([y, y]), y, huber(1.0)).item() == 0.0
    # one clip over-, one under-predicted by as much, at the same prediction: no rescaling helps
    assert invariance.irmv1_penalty(torch.tensor([[1.0, 1.0]]), torch.tensor([1.5, 0.5]), huber(1.0)).item() == pytest.approx(0.0)


def test_irmv1_penalty_has_gradients_for_the_model():
    p = torch.tensor([[2.0, 0.5]], requires_grad=True)
    invariance.irmv1_penalty(p, torch.tensor([1.0, 1.0]), huber(0.5)).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_irm_with_the_non_smooth_l1_is_a_clear_config_error():
    from misr.errors import ConfigError

    with pytest.raises(ConfigError, match="set loss.kind to pseudo_huber"):
        model_cfg("model.invariance.kind=irm")
    assert model_cfg("model.invariance.kind=irm", "model.loss.kind=pseudo_huber").loss.delta == 0.5


def test_the_optimiser_is_reset_when_the_penalty_switches_on():
    from misr.training.loop import penalty_switches_on

    linear = model_cfg("model.invariance.warmup_epochs=2", "model.invariance.schedule=linear")
    assert [penalty_switches_on(linear, e) for e in range(4)] == [False, True, False, False]
    step = model_cfg("model.invariance.warmup_epochs=2", "model.invariance.schedule=step")
    assert [penalty_switches_on(step, e) for e in range(4)] == [False, False, True, False]
    assert not any(penalty_switches_on(model_cfg("model.invariance.warmup_epochs=0"), e) for e in range(3))
    assert not any(penalty_switches_on(model_cfg("model.name=misr_no_inv"), e) for e in range(4))


def test_penalty_weight_schedules():
    assert [invariance.penalty_weight(2.0, e, 2, "step") for e in range(4)] == [0.0, 0.0, 2.0, 2.0]
    assert [invariance.penalty_weight(2.0, e, 2, "linear") for e in range(4)] == [0.0, 1.0, 2.0, 2.0]
    assert invariance.penalty_weight(2.0, 0, 0, "linear") == 2.0


# ---------------------------------------------------------------------------------- model


def test_misr_forward_shapes_and_environments():
    torch.manual_seed(0)
    cfg = model_cfg()
    model = MISR(cfg, SPEC)
    out = model(batch())
    assert out["pred"].shape == (4,) and out["env_preds"].shape == (4, 4)
    assert torch.equal(out["pred"], out["env_preds"][0])
    assert out["fusion_weights"].shape == (3, 4, 8)
    assert set(out["gaussians"]) == {"text", "audio", "visual"}
    model.eval()
    a, b = model(batch())["pred"], model(batch())["pred"]
    assert torch.equal(a, b)  # evaluation is deterministic: means, no draws


def test_environment_schemes():
    torch.manual_seed(0)
    cfg = model_cfg("model.environments=unimodal")
    model = MISR(cfg, SPEC)
    z = torch.randn(4, 8)
    h = {m: torch.randn(4, 16) for m in ("text", "audio", "visual")}
    envs = model.environments(z, h, None, None, sample=True)
    assert envs.shape == (4, 4, 8) and torch.equal(envs[0], z)
    assert torch.allclose(envs[2], model.unimodal["audio"](h["audio"]))
    model_plus = MISR(model_cfg(), SPEC)
    envs = model_plus.environments(z, h, None, None, sample=True)
    assert torch.allclose(envs[1], z + model_plus.unimodal["text"](h["text"]))

    z_only = MISR(model_cfg("model.name=misr_z_env", "model.z_env_samples=3"), SPEC)
    assert len(z_only.unimodal) == 0
    out = z_only(batch())
    assert out["env_preds"].shape == (3, 4)
    z_only.eval()
    assert z_only(batch())["env_preds"].shape == (1, 4)


def test_late_fusion_is_plain_l1():
    cfg = model_cfg("model.name=late_fusion")
    model = build_model(cfg, SPEC)
    assert isinstance(model, LateFusion)
    out = model(batch())
    terms = loss_terms(cfg, out, batch()["y"])
    assert set(terms) == {"risk", "l1_z"}
    assert terms["risk"].item() == pytest.approx((out["pred"] - batch()["y"]).abs().mean().item())
    w = loss_weights(cfg, epoch=10)
    assert total_loss(terms, w).item() == pytest.approx(terms["risk"].item())


def test_loss_terms_and_total_hand_composition():
    cfg = model_cfg(
        "model.kl.prior_weight=0.5", "model.kl.pairwise_weight=0.25", "model.invariance.weight=2", "model.invariance.warmup_epochs=0"
    )
    y = torch.tensor([1.0, -1.0])
    zeros = torch.zeros(2, 2)
    out = {
        "env_preds": torch.tensor([[1.0, -1.0], [2.0, -1.0]]),  # risks 0 and 0.5
        "gaussians": {"text": (torch.ones(2, 2), zeros), "audio": (zeros, zeros), "visual": (zeros, zeros)},
    }
    terms = loss_terms(cfg, out, y)
    assert terms["risk"].item() == pytest.approx(0.25)
    assert terms["l1_z"].item() == pytest.approx(0.0)
    # KL(N(1, 1) || N(0, 1)) over 2 dims = 1; modalities average: 1/3
    assert terms["kl_prior"].item() == pytest.approx(1 / 3)
    # ordered pairs: (t,a), (t,v), (a,t), (v,t) each 1; (a,v), (v,a) 0 -> 4/6
    assert terms["kl_pair"].item() == pytest.approx(4 / 6)
    assert terms["invariance"].item() == pytest.approx(0.0625)  # var([0, 0.5])
    w = loss_weights(cfg, epoch=0)
    expected = 0.25 + 0.5 / 3 + 0.25 * 4 / 6 + 2 * 0.0625
    assert total_loss(terms, w).item() == pytest.approx(expected / 2)  # divided by the penalty weight, as it is > 1
    w_small = {**w, "invariance": 0.5}
    assert total_loss(terms, w_small).item() == pytest.approx(0.25 + 0.5 / 3 + 0.25 * 4 / 6 + 0.5 * 0.0625)


def test_ablation_switches():
    assert loss_weights(model_cfg("model.name=misr_no_dist"), 5)["kl_prior"] == 0.0
    assert loss_weights(model_cfg("model.name=misr_no_dist"), 5)["invariance"] > 0
    assert loss_weights(model_cfg("model.name=misr_no_inv"), 5)["invariance"] == 0.0
    assert loss_weights(model_cfg("model.name=misr_no_inv"), 5)["kl_pair"] > 0
    w = loss_weights(model_cfg("model.invariance.warmup_epochs=4", "model.invariance.schedule=step"), 2)
    assert w["invariance"] == 0.0


def test_irm_kind_through_loss_terms():
    cfg = model_cfg("model.invariance.kind=irm", "model.loss.kind=pseudo_huber")
    torch.manual_seed(0)
    model = MISR(cfg, SPEC)
    terms = loss_terms(cfg, model(batch()), batch()["y"])
    assert terms["invariance"].item() > 0
    total_loss(terms, loss_weights(cfg, 10)).backward()
    assert model.encoders["audio"].proj.weight.grad is not None


def test_a_sequence_longer_than_the_limit_is_uniformly_subsampled():
    from misr.model.encoders import uniform_subsample

    torch.manual_seed(0)
    enc = SequenceEncoder(3, 16, n_heads=2, n_layers=1, n_summary=2, dropout=0.0, max_len=64).eval()
    x = torch.randn(2, 150, 3)
    lengths = torch.tensor([150, 40])
    sub, sub_len = uniform_subsample(x, lengths, 64)
    assert sub.shape == (2, 64, 3) and sub_len.tolist() == [64, 40]
    # the long clip keeps frames 0, 2, 4, ... (150/64 apart), first and last part both covered
    idx = [int(i * 150 / 64) for i in range(64)]
    assert torch.equal(sub[0], x[0, idx]) and idx[-1] >= 140
    assert torch.equal(sub[1, :40], x[1, :40])  # a short clip is untouched
    with torch.no_grad():
        out = enc(x, lengths)
        assert torch.allclose(out[0], enc(x[:1, idx], torch.tensor([64]))[0], atol=1e-6)
        assert torch.allclose(out[1], enc(x[1:, :40], torch.tensor([40]))[0], atol=1e-6)


def test_misr_trains_and_predicts_on_a_clip_longer_than_the_limit():
    params = load_params(REPO / "params.yaml", ["model.d_model=16", "model.n_heads=2", "model.latent_dim=8", "model.max_frames=32"])
    model = build_model(params.model, InputSpec(audio_dim=5, visual_dim=4, text_kind="tokens", vocab_size=50))
    batch = {
        "y": torch.tensor([1.0, -1.0]), "text_ids": torch.randint(1, 50, (2, 6)), "text_mask": torch.ones(2, 6, dtype=torch.long),
        "audio": torch.randn(2, 100, 5), "audio_lengths": torch.tensor([100, 20]),
        "visual": torch.randn(2, 45, 4), "visual_lengths": torch.tensor([45, 45]),
    }  # fmt: skip
    out = model(batch)
    total_loss(loss_terms(params.model, out, batch["y"]), loss_weights(params.model, 5)).backward()
    assert torch.isfinite(out["pred"]).all()


def test_each_variant_switches_on_what_its_table_row_says():
    from misr.config.model import VARIANTS

    for name, variant in VARIANTS.items():
        cfg = model_cfg(f"model.name={name}", "model.invariance.warmup_epochs=0", "model.environments=groups")
        w = loss_weights(cfg, epoch=5)
        assert (w["kl_prior"] > 0) == variant.kl and (w["invariance"] > 0) == variant.invariance, name
        assert isinstance(build_model(cfg, SPEC), MISR if variant.gaussian else LateFusion), name
        assert cfg.infers_groups == ((variant.invariance and not variant.z_draws) or variant.group_risk), name


def test_the_z_only_ablation_is_penalised_across_its_draws_under_any_environments_setting():
    # with model.environments groups (params.yaml's default) the draws of z are this variant's environments all the same
    torch.manual_seed(0)
    cfg = model_cfg("model.name=misr_z_env", "model.z_env_samples=3", "model.environments=groups")
    assert cfg.environments == "groups" and cfg.environment_source == "z_draws"
    model = build_model(cfg, SPEC)
    terms = loss_terms(cfg, model(batch()), batch()["y"])
    assert terms["invariance"].item() > 0


@pytest.mark.parametrize("risk", ["group_mean", "pooled"])
def test_under_groups_each_group_weighs_alike_in_the_risk_unless_pooled(risk):
    """Thirty clips the predictor fits and two it misses: V-REx's risk averages the two groups' risks."""
    cfg = model_cfg("model.environments=groups", f"model.invariance.risk={risk}")
    y = torch.zeros(32)
    pred = torch.zeros(32)
    pred[30:] = 2.0  # the minority group's clips are off by 2
    groups = torch.zeros(32, dtype=torch.long)
    groups[30:] = 1
    out = {"env_preds": pred[None], "gaussians": {m: (torch.zeros(32, 2), torch.zeros(32, 2)) for m in ("text", "audio", "visual")}}
    terms = loss_terms(cfg, out, y, groups)
    expected = (0.0 + 2.0) / 2 if risk == "group_mean" else 2.0 * 2 / 32
    assert terms["risk"].item() == pytest.approx(expected)
    assert terms["invariance"].item() == pytest.approx(1.0)  # var([0, 2]) either way
    before = loss_terms(cfg, out, y, None)  # the warm-up: no groups yet, the pooled (ERM) risk
    assert before["risk"].item() == pytest.approx(2.0 * 2 / 32) and before["invariance"].item() == 0.0


def test_the_group_balanced_late_fusion_reference_averages_its_groups_risks():
    cfg = model_cfg("model.name=late_fusion_groups")
    y, pred = torch.zeros(10), torch.zeros(10)
    pred[8:] = 1.0
    groups = (torch.arange(10) >= 8).long()
    terms = loss_terms(cfg, {"pred": pred, "env_preds": pred[None]}, y, groups)
    assert terms["risk"].item() == pytest.approx(0.5) and "invariance" not in terms
    assert loss_terms(cfg, {"pred": pred, "env_preds": pred[None]}, y, None)["risk"].item() == pytest.approx(0.2)
    assert loss_terms(model_cfg("model.name=late_fusion"), {"pred": pred, "env_preds": pred[None]}, y, groups)[
        "risk"
    ].item() == pytest.approx(0.2)


def test_the_learning_rate_leaves_its_warm_up_whatever_the_planned_epochs():
    """With train.epochs=10000 (a bound for early stopping) the warm-up was 1,000 epochs: it never ended."""
    from misr.training.setup import MAX_WARMUP_EPOCHS, warmup_cosine

    steps = 20
    factor = warmup_cosine(10000 * steps, 0.1, steps)
    assert factor(MAX_WARMUP_EPOCHS * steps - 1) == 1.0 and factor(MAX_WARMUP_EPOCHS * steps) == pytest.approx(1.0, abs=1e-6)
    assert factor(0) == 1 / (MAX_WARMUP_EPOCHS * steps)
    usual = warmup_cosine(30 * steps, 0.1, steps)  # the default 30 epochs: 3 epochs of warm-up, as before
    assert usual(3 * steps - 1) == 1.0 and usual(0) == 1 / (3 * steps)


def test_a_validation_split_without_groups_is_named_as_such(tmp_path):
    """When only valid lacked groups, the warning blamed the training clips."""
    from misr.data.synth import generate
    from misr.errors import MisrError
    from misr.model import build_model
    from misr.store.store import FeatureStore
    from misr.training.batches import batches_for
    from misr.training.groups import validation_partition
    from misr.training.setup import resolve_input_spec
    from tests.helpers import TINY_TRAINING, params

    p = params(*TINY_TRAINING, "data.synth.scenario=shift", "data.synth.n_clips={train: 16, valid: 16, test: 8}")
    generate(p.data.synth, tmp_path / "store")
    model = build_model(p.model, resolve_input_spec(p.model, tmp_path / "store"))
    split = FeatureStore(tmp_path / "store").load_split("valid")
    split.unimodal_labels = {m: split.labels.clone() for m in ("text", "audio", "visual")}  # every modality agrees on valid
    valid = batches_for(split, torch.device("cpu"))
    with pytest.raises(MisrError, match="of the validation clips, so there are no groups"):
        validation_partition(model, valid, 8, None)
