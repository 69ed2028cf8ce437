"""VQ-VAE + VAR: block-wise causality, exact normalisation, KV cache == full recompute, CFG, completion."""
from __future__ import annotations

import itertools

import pytest
import torch

import zoo
from zoo.errors import InputError
from zoo.logits import Guidance, LogitProcessor

TOK = dict(image_shape=[1, 12, 12], channels=8, latent_dim=8, codebook_size=16, scales=[1, 2, 3])


def tiny_var(num_classes: int = 3, tokenizer: dict | None = None, seed: int = 0, **kw):
    """A small VAR with random (not near-identity) weights, so every path carries signal."""
    torch.manual_seed(seed)
    m = zoo.create("var", tokenizer=tokenizer or TOK, num_classes=num_classes, dim=32, depth=2, heads=2, **kw)
    for p in m.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.2)
    return m.eval()


def test_logits_of_scale_s_get_no_gradient_from_scales_at_or_after_s():
    m = tiny_var()
    tokens = torch.randint(0, 16, (2, m.tokenizer.num_tokens), generator=torch.Generator().manual_seed(0))
    codes = [m.vqvae.codebook(tokens[:, sl]).detach().requires_grad_(True) for sl in m.slices]
    logits = m.logits_from_codes(codes, torch.tensor([0, 2]))
    for s, sl in enumerate(m.slices):
        grads = torch.autograd.grad(logits[:, sl].square().sum(), codes, allow_unused=True, retain_graph=True)
        for r, g in enumerate(grads):
            size = 0.0 if g is None else g.abs().sum().item()
            if r >= s:
                assert size == 0, f"scale {s}'s logits depend on the codes of scale {r}"
            else:
                assert size > 0, f"scale {s}'s logits ignore the codes of coarser scale {r}"


def test_changing_a_token_of_scale_s_or_later_leaves_earlier_and_same_scale_logits_unchanged():
    m = tiny_var()
    tokens = torch.randint(0, 16, (1, m.tokenizer.num_tokens), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = m.logits_all(tokens)
        for s, sl in enumerate(m.slices):
            changed = tokens.clone()
            changed[0, sl.start] = (changed[0, sl.start] + 1) % 16
            diff = (m.logits_all(changed) - base).abs().amax(-1)[0]
            assert diff[:sl.stop].max() == 0
            if s + 1 < len(m.slices):
                assert diff[sl.stop:].max() > 0


@pytest.mark.parametrize("num_classes", [0, 2])
def test_probabilities_of_all_token_sequences_sum_to_one(num_classes):
    tok = dict(image_shape=[1, 8, 8], channels=4, latent_dim=4, codebook_size=2, scales=[1, 2])
    m = tiny_var(num_classes, tok)
    every = torch.tensor(list(itertools.product([0, 1], repeat=m.tokenizer.num_tokens)))
    assert len(every) == 32
    with torch.no_grad():
        for y in ([None] if not num_classes else [None, torch.zeros(32, dtype=torch.long)]):
            assert m.log_prob_tokens(every, y).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("y,cfg,top_k,top_p", [(None, None, None, None), (1, 2.0, None, None),
                                               (None, None, 4, 0.9), (2, 1.5, 3, None)])
def test_kv_cache_logits_and_samples_equal_the_full_recompute(y, cfg, top_k, top_p):
    m = tiny_var()
    labels = None if y is None else torch.full((3,), y)
    fast, slow = m.stepper(3, y=labels, cfg=cfg), m.reference_stepper(3, y=labels, cfg=cfg)
    for t in range(fast.num_steps):
        a, b = fast.logits(t), slow.logits(t)
        assert a.shape == (3, len(fast.positions(t)), 16)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        chosen = a.argmax(-1)
        fast.advance(t, chosen)
        slow.advance(t, chosen)
    kw = dict(seed=7, y="null" if y is None else y, cfg=cfg, top_k=top_k, top_p=top_p)
    assert torch.equal(m.sample(5, **kw), m.sample(5, naive=True, **kw))


def test_guidance_scale_zero_is_unconditional_sampling():
    m = tiny_var()
    uncond = m.sample(6, seed=3)
    assert torch.equal(m.sample(6, seed=3, y=1, cfg=0.0), uncond)
    assert not torch.equal(m.sample(6, seed=3, y=1, cfg=3.0), uncond)


def test_guided_logits_are_uncond_plus_scale_times_difference():
    m = tiny_var()
    y = torch.tensor([0, 1])
    with torch.no_grad():
        guided = m.stepper(2, y=y, cfg=2.5).logits(0)
        cond = m.stepper(2, y=y).logits(0)
        uncond = m.stepper(2).logits(0)
    torch.testing.assert_close(guided, uncond + 2.5 * (cond - uncond))


def test_class_conditioning_changes_the_distribution_and_is_validated():
    m = tiny_var()
    tokens = torch.randint(0, 16, (2, m.tokenizer.num_tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(m.log_prob_tokens(tokens, torch.tensor([0, 0])),
                                  m.log_prob_tokens(tokens, torch.tensor([1, 1])))
    with pytest.raises(InputError, match="classes must be"):
        m.sample(2, y=3)


def test_completion_keeps_observed_pixels_and_teacher_forces_fully_observed_tokens():
    m = tiny_var()
    x = m.sample(4, seed=0)
    mask = zoo.masks.top_half(x)
    tmask = m.tokenizer.token_mask(mask.expand(4, 1, 12, 12))
    # 12x12 image, 3x3 latent of 4x4-pixel cells: only the top latent row lies wholly in rows 0-5; the 2x2
    # scale averages latent rows 0-1 and 1-2, so none of its tokens is observed
    assert tmask[0].tolist() == [False] + [False] * 4 + [True] * 3 + [False] * 6
    done = m.complete(x, mask, seed=1, approximate=True)
    assert torch.equal(done[mask.expand_as(x)], x[mask.expand_as(x)])
    assert torch.equal(done, m.complete(x, mask, seed=1, naive=True, approximate=True))
    everything = torch.ones_like(x, dtype=torch.bool)
    assert torch.equal(m.complete(x, everything, seed=1), x)


def test_fully_observed_scales_fill_the_kv_cache_like_the_reference():
    m = tiny_var()
    x = m.sample(3, seed=0)
    tokens = m.tokenizer.encode(x)
    observed = torch.zeros_like(tokens, dtype=torch.bool)
    observed[:, m.slices[0]] = True  # the first scale is given: the sampler still asks for its logits
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = m.generate_tokens(3, generator=g1, processor=LogitProcessor(), observed=tokens, observed_mask=observed)
    b = m.generate_tokens(3, generator=g2, processor=LogitProcessor(), observed=tokens, observed_mask=observed,
                          naive=True)
    assert torch.equal(a, b)
    assert torch.equal(a[:, m.slices[0]], tokens[:, m.slices[0]])


def test_token_nll_is_labelled_as_a_token_likelihood():
    m = tiny_var()
    assert m.likelihood == "tokens"
    from zoo.evaluate import NLLResult
    assert "not of pixels" in str(NLLResult(10.0, 0.1, 5, 144, m.likelihood))


def test_vqvae_tokens_round_trip_and_shapes():
    vq = zoo.create("vqvae", **TOK).eval()
    x = torch.rand(3, 1, 12, 12)
    tokens = vq.tokenizer.encode(x)
    assert tokens.shape == (3, 1 + 4 + 9) and tokens.max() < 16
    maps = vq.encode_maps(x)
    assert [tuple(t.shape) for t in maps] == [(3, 1), (3, 4), (3, 9)]
    assert vq.tokenizer.decode(tokens).shape == x.shape
    with pytest.raises(InputError, match="tokenizer, not a generative model"):
        vq.sample(2)
    with pytest.raises(InputError, match="tokens must have shape"):
        vq.tokenizer.decode(tokens[:, :5])


def test_vqvae_rejects_bad_scales_and_shapes():
    with pytest.raises(InputError, match="end at the latent size"):
        zoo.create("vqvae", **{**TOK, "scales": [1, 2]})
    with pytest.raises(InputError, match="divisible by 4"):
        zoo.create("vqvae", **{**TOK, "image_shape": [1, 10, 10]})


def test_vqvae_training_reduces_loss_and_reseeds_dead_codes():
    torch.manual_seed(0)
    vq = zoo.create("vqvae", **TOK)
    x = (torch.rand(16, 1, 12, 12) > 0.6).float()
    opt = torch.optim.Adam(vq.parameters(), lr=3e-3)
    vq.usage[:4] = 0.0  # four dead codes
    before = vq.codebook.weight[:4].clone()
    losses = []
    for step in range(30):
        loss = vq.training_loss(x, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step == 0:
            assert not torch.allclose(vq.codebook.weight[:4], before)  # re-seeded from the batch's latents
            assert (vq.usage[:4] > 0).all()
    assert losses[-1] < 0.7 * losses[0]


def test_straight_through_gradient_reaches_the_encoder():
    vq = zoo.create("vqvae", **TOK)
    loss = vq.training_loss(torch.rand(2, 1, 12, 12), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert vq.encoder[0].weight.grad.abs().sum() > 0
    assert vq.codebook.weight.grad.abs().sum() > 0


def test_training_updates_the_transformer_only_and_drops_classes_deterministically():
    m = tiny_var()
    m.train()
    x = m.sample(4, seed=0)
    y = torch.tensor([0, 1, 2, 0])
    a = m.training_loss(x, y, generator=torch.Generator().manual_seed(1))
    b = m.training_loss(x, y, generator=torch.Generator().manual_seed(1))
    assert a.item() == b.item()
    a.backward()
    assert all(p.grad is None for p in m.vqvae.parameters())
    assert m.head.weight.grad.abs().sum() > 0
    assert not m.vqvae.training


def test_bundled_vqvae_is_near_a_fixed_point_on_its_own_reconstructions():
    """decode(encode(.)) of the trained VQ-VAE, applied again to its own decoded output, moves it little:
    about as little as the tokenizer's reconstruction error on real test digits (28.5 dB). The tokens
    themselves need not repeat: residual codes of nearby vectors are interchangeable."""
    vq = zoo.load("vqvae-mnist")
    x1 = zoo.load("var-mnist").sample(16, seed=0, y=torch.arange(16) % 10, cfg=2.0)  # decoded outputs
    x2 = vq.tokenizer.decode(vq.tokenizer.encode(x1)).clamp(0, 1)

    def psnr(a, b):
        return 10 * torch.log10(1 / (a - b).pow(2).mean()).item()

    assert psnr(x2, x1) > 22
    assert psnr(x2, x1) > psnr(x1, x1.roll(1, 0)) + 10  # far closer than another digit is


# ---- sampling fidelity: the guidance ramp, class choice, the card's preset, the reference initialisation ----

@pytest.mark.parametrize("cfg", [0.0, 2.5, 4.0])
def test_linear_schedule_guides_each_scale_with_the_references_ramp(cfg):
    """Scale k of K is guided with s_k = 1 + (s - 1) k / (K - 1) (the reference's t_k = t k / (K - 1), t = s - 1):
    the first scale is the conditional model, the last is guided with s; cached and naive samplers agree."""
    m = tiny_var(tokenizer=dict(TOK, image_shape=[1, 16, 16], scales=[1, 2, 3, 4]))
    y = torch.tensor([0, 2, 1])
    g_ = Guidance(cfg, "linear")  # what the core passes a stepper as cfg for cfg_schedule="linear"
    guided, naive = m.stepper(3, y=y, cfg=g_), m.reference_stepper(3, y=y, cfg=g_)
    cond, uncond = m.stepper(3, y=y), m.stepper(3)
    K = guided.num_steps
    with torch.no_grad():
        for t in range(K):
            g, c, u = guided.logits(t), cond.logits(t), uncond.logits(t)
            s_t = 1 + (cfg - 1) * t / (K - 1)
            torch.testing.assert_close(g, u + s_t * (c - u), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(naive.logits(t), g, rtol=1e-5, atol=1e-5)
            if t == 0:
                torch.testing.assert_close(g, c, rtol=1e-5, atol=1e-5)
            chosen = torch.randint(0, 16, (3, len(guided.positions(t))), generator=torch.Generator().manual_seed(t))
            for st in (guided, naive, cond, uncond):
                st.advance(t, chosen)
    kw = dict(seed=5, y=y, cfg=cfg, cfg_schedule="linear")
    assert torch.equal(m.sample(3, **kw), m.sample(3, naive=True, **kw))
    if cfg != 1.0:
        assert not torch.equal(m.sample(3, **kw), m.sample(3, seed=5, y=y, cfg=cfg))  # constant differs


def test_uniform_classes_are_drawn_per_image_from_the_seed_and_null_is_unconditional():
    m = tiny_var(num_classes=4)
    g = torch.Generator().manual_seed(0)
    _, labels = m.sampling_settings(400, generator=g, y="uniform")
    assert labels.shape == (400,) and set(labels.tolist()) == {0, 1, 2, 3}
    counts = torch.bincount(labels, minlength=4)
    assert counts.min() > 60  # uniform: 100 expected per class
    # the drawn classes are the images' classes: uniform sampling equals sampling those classes explicitly
    _, first = m.sampling_settings(5, generator=torch.Generator().manual_seed(9), y="uniform")
    gen = torch.Generator().manual_seed(9)
    torch.randint(4, (5,), generator=gen)  # the draw of the classes comes first
    assert torch.equal(m.sample(5, seed=9, y="uniform", cfg=2.0),
                       m.sample(5, y=first, cfg=2.0, generator=gen))
    assert torch.equal(m.sample(5, seed=1, y="null"), m.sample(5, seed=1))  # uncarded: the null class
    with pytest.warns(DeprecationWarning, match="y='null'"):
        assert torch.equal(m.sample(5, seed=1, y=None), m.sample(5, seed=1, y="null"))
    with pytest.raises(InputError, match="needs a class"):
        m.sample(2, y="null", cfg=2.0)
    with pytest.raises(InputError, match="'uniform' or 'null'"):
        m.sample(2, y="everything")
    with pytest.raises(InputError, match="not class-conditional"):
        tiny_var(num_classes=0).sample(2, y="uniform")


def test_the_cards_sampling_preset_is_the_default_and_every_argument_overrides_it():
    from dataclasses import replace
    shipped = zoo.get_card("var-mnist").sampling  # the bundled cards carry a reference-like preset
    assert shipped["classes"] == "uniform" and shipped["cfg_schedule"] == "linear"
    assert 0.15 * 512 <= shipped["top_k"] <= 0.3 * 512 and shipped["top_p"] <= 0.96
    m = tiny_var(num_classes=4)
    preset = dict(classes="uniform", temperature=0.9, top_k=5, top_p=0.9, cfg=2.5, cfg_schedule="linear")
    m.card = replace(zoo.get_card("var-mnist"), sampling=preset)
    assert m.sampling_preset == preset
    spelled = dict(temperature=1.0, top_k=None, top_p=None, cfg=None, cfg_schedule="constant", y="null")
    spelled.update({("y" if k == "classes" else k): v for k, v in preset.items()})
    x = m.sample(4, seed=2)
    assert torch.equal(x, m.sample(4, seed=2, preset=False, **spelled))
    others = dict(temperature=1.2, top_k=None, top_p=None, cfg=1.5, cfg_schedule="constant", y=3)
    for key, value in others.items():
        assert torch.equal(m.sample(4, seed=2, **{key: value}),
                           m.sample(4, seed=2, preset=False, **{**spelled, key: value})), key
    # no preset: the model's own distribution and the null class, exactly as before presets existed
    card, m.card = m.card, None
    uncarded = m.sample(4, seed=2)
    m.card = card
    assert torch.equal(m.sample(4, seed=2, preset=False), uncarded)
    assert not torch.equal(x, uncarded)
    # the null class turns the preset's guidance off (there is no class to guide towards)
    assert torch.equal(m.sample(4, seed=2, y="null"),
                       m.sample(4, seed=2, preset=False, **{**spelled, "y": "null", "cfg": None}))


def test_new_models_get_the_reference_initialisation_and_the_tokenizer_is_left_alone():
    from zoo_var.vqvae import VQVAE
    dim, depth = 48, 3
    torch.manual_seed(0)
    vq = VQVAE(**TOK)
    torch.manual_seed(0)
    m = zoo.create("var", tokenizer=TOK, num_classes=5, dim=dim, depth=depth, heads=2)
    assert all(torch.equal(a, b) for a, b in zip(vq.state_dict().values(), m.vqvae.state_dict().values()))
    std = (1 / (3 * dim)) ** 0.5
    for name in ("class_emb.weight", "lvl.weight", "pos", "start", "word.weight", "blocks.0.attn.qkv.weight"):
        w = m.get_parameter(name)
        assert w.std().item() == pytest.approx(std, rel=0.25), name
        assert w.abs().max() <= 2 + 1e-6  # truncated at +-2 (timm's and the reference's trunc_normal_)
    assert m.head.weight.std().item() == pytest.approx(0.02 * std, rel=0.25)
    for blk in m.blocks:
        assert blk.attn.proj.weight.std().item() == pytest.approx(std / (2 * depth) ** 0.5, rel=0.25)
        assert blk.mlp[2].weight.std().item() == pytest.approx(std / (2 * depth) ** 0.5, rel=0.25)
        gates = blk.ada[1].weight.view(6, dim, dim)
        assert gates[[0, 3]].abs().max() < 1e-4  # the branches start closed: each block is near the identity
        assert gates[[1, 2, 4, 5]].std().item() == pytest.approx(0.5 * std, rel=0.25)
        assert not blk.ada[1].bias.any()
    # the level embedding no longer dominates a scale's input (it was N(0, 1), norm ~13 against ~3)
    assert m.lvl.weight.norm(dim=1).max() < 2 * m.class_emb.weight.norm(dim=1).max()
    # the shipped weights still load strictly: the tensor names are unchanged
    assert set(zoo.load("var-mnist").state_dict()) == set(zoo.create("var", **zoo.get_card("var-mnist").config)
                                                          .state_dict())
