"""zoo.SamplingSettings, the one home of the sampling settings: merging, checking, and every way in using it."""
from __future__ import annotations

import pickle
from dataclasses import replace

import pytest
import torch

import zoo
from zoo import presets
from zoo.cli import main
from zoo.logits import LogitProcessor
from zoo.settings import UNSET, SamplingSettings

SPEC = SamplingSettings.spec()
PRESET = dict(classes="uniform", temperature=0.9, top_k=5, top_p=0.9, cfg=2.5, cfg_schedule="linear")


def test_the_fields_are_the_settings_and_each_says_how_it_is_spelled():
    assert list(SPEC) == ["temperature", "top_k", "top_p", "cfg", "cfg_schedule", "classes"]
    assert SamplingSettings().given() == {}  # nothing given: every field UNSET
    assert SamplingSettings.defaults() == SamplingSettings(temperature=1.0, top_k=None, top_p=None, cfg=None,
                                                           cfg_schedule="constant", classes=None)
    assert presets.PRESET_KEYS == {name: (s.toml, s.default) for name, s in SPEC.items()}  # derived, not typed again
    assert zoo.SamplingSettings is SamplingSettings and presets.UNSET is UNSET


def test_given_beats_the_preset_which_beats_the_default():
    given = SamplingSettings(temperature=1.2, top_k=None)
    s = given.resolved(PRESET)
    assert s == SamplingSettings(temperature=1.2, top_k=None, top_p=0.9, cfg=2.5, cfg_schedule="linear",
                                 classes="uniform")
    assert SamplingSettings().resolved(PRESET) == SamplingSettings(**PRESET)
    assert SamplingSettings().resolved() == SamplingSettings().resolved({}) == SamplingSettings.defaults()
    assert SamplingSettings(top_p=0.5).resolved({"temperature": 0.7}) == replace(SamplingSettings.defaults(),
                                                                                top_p=0.5, temperature=0.7)
    assert given.over(SamplingSettings(temperature=0.5, cfg=3.0)) == SamplingSettings(temperature=1.2, top_k=None,
                                                                                      cfg=3.0)
    # the older spelling, zoo.presets.resolve, is the same merge
    assert presets.resolve(PRESET, temperature=1.2, top_k=None, top_p=UNSET) == s.given()


def test_the_null_class_drops_a_presets_guidance_and_refuses_guidance_given_with_it():
    assert SamplingSettings(classes="null").resolved(PRESET).cfg is None
    with pytest.raises(zoo.InputError, match="needs a class"):
        SamplingSettings(classes="null", cfg=2.0).resolved()
    with pytest.raises(zoo.InputError, match="needs a class"):
        SamplingSettings(cfg=2.0).resolved({"classes": "null"})
    assert SamplingSettings(classes=None, cfg=2.0).resolved().cfg == 2.0  # None (deprecated) is not checked here


@pytest.mark.parametrize("field, value, words", [
    ("temperature", -1, "temperature must be >= 0"), ("temperature", "hot", "temperature must be a number"),
    ("top_k", 0, "top_k must be a positive integer"), ("top_k", 2.5, "top_k must be a positive integer"),
    ("top_k", True, "top_k must be a positive integer"), ("top_p", 0, "top_p must be in (0, 1]"),
    ("top_p", 1.5, "top_p must be in (0, 1]"), ("cfg", -0.5, "cfg must be >= 0"),
    ("cfg_schedule", "cosine", "cfg_schedule must be one of 'constant', 'linear'"),
    ("classes", "everything", "'uniform' or 'null'")])
def test_a_bad_value_is_refused_once_in_the_same_words_everywhere(field, value, words):
    with pytest.raises(zoo.InputError) as e:
        SamplingSettings(**{field: value})
    assert words in str(e.value)
    if field != "classes":  # the logit processor's checks are these very checks
        with pytest.raises(zoo.InputError) as again:
            LogitProcessor(**{field: value})
        assert str(again.value) == str(e.value)
    with pytest.raises(zoo.CardError) as card:  # a card's [sampling] names the card and the field
        SamplingSettings.from_preset({field: value}, "cards/x.toml")
    assert "cards/x.toml" in str(card.value) and field in str(card.value)


def test_a_preset_takes_toml_types_and_known_keys_only():
    assert SamplingSettings.from_preset(PRESET) == SamplingSettings(**PRESET)
    for table, words in [({"cfg": True}, "must be int or float"), ({"classes": 3}, "must be str"),
                         ({"classes": "all"}, "must be one of 'uniform', 'null'"), ({"guidance": 2.5}, "unknown field"),
                         ({"top_k": 5.0}, "must be int")]:
        with pytest.raises(zoo.CardError, match=words):
            SamplingSettings.from_preset(table, "c.toml")
    with pytest.raises(zoo.CardError, match="must be a table"):
        SamplingSettings.from_preset(["temperature"])
    assert presets.check_preset(dict(PRESET)) == PRESET


def test_text_from_flags_and_the_page():
    s = SamplingSettings.from_text(temperature=0.9, top_k=0, top_p=None, cfg="", cfg_schedule="linear",
                                   classes="3: three")
    assert s == SamplingSettings(temperature=0.9, top_k=None, cfg_schedule="linear", classes=3)
    assert SamplingSettings.from_text(top_k=50.0).top_k == 50  # a page's whole number
    assert SamplingSettings.from_text(classes=" uniform ").classes == "uniform"
    with pytest.raises(zoo.InputError, match="class index"):
        SamplingSettings.from_text(classes="cat")


def test_classes_as_a_tensor_are_kept_as_a_tuple_and_settings_pickle():
    s = SamplingSettings(classes=torch.tensor([1, 2, 3]))
    assert s.classes == (1, 2, 3) and s == SamplingSettings(classes=[1, 2, 3]) and hash(s)
    assert SamplingSettings(classes=torch.tensor(4)).classes == 4
    again = pickle.loads(pickle.dumps(SamplingSettings(top_k=3)))
    assert again == SamplingSettings(top_k=3) and again.temperature is UNSET


def test_one_line_descriptions_flags_and_sample_keywords():
    s = SamplingSettings(temperature=0.9, top_k=None, classes="uniform")
    assert s.describe() == "temperature=0.9, top_k=None, classes=uniform" and SamplingSettings().describe() == "none"
    assert s.flags() == " --temperature 0.9 --top-k 0 --class uniform"  # None top-k spelled as the flag spells off
    assert s.sample_kwargs() == dict(temperature=0.9, top_k=None, y="uniform")
    assert list(s.sample_kwargs(unset=True)) == ["temperature", "top_k", "top_p", "cfg", "cfg_schedule", "y"]
    assert SamplingSettings.from_sample_kwargs(**s.sample_kwargs(), seed=3, preset=False) == s
    assert SamplingSettings().note(10, PRESET) == "classes uniform, temperature 0.9, top_k 5, top_p 0.9, cfg 2.5 linear"
    assert SamplingSettings(classes="null").note(10, PRESET) == ("classes null (unconditional), temperature 0.9, "
                                                                 "top_k 5, top_p 0.9, no guidance")
    assert SamplingSettings(temperature=0.7).note(0) == "temperature 0.7"
    assert s.processor() == LogitProcessor(temperature=0.9)


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_the_cli_flags_are_exactly_the_settings_fields(command):
    params = {p.name: p for p in main.commands[command].params}
    flags = {name: params[name].opts for name in SPEC if name in params}
    assert flags == {name: [s.flag] for name, s in SPEC.items()}
    assert "no_preset" in params
    for name, s in SPEC.items():
        if s.choices and not s.index:
            assert list(params[name].type.choices) == list(s.choices)


def test_the_demo_fields_are_exactly_the_settings_fields():
    from zoo.demo import sampling_kwargs
    pages = {s.page for s in SPEC.values()}
    kw = sampling_kwargs(**{page: None for page in pages})
    assert kw == dict(SamplingSettings().sample_kwargs(unset=True), preset=True)
    with pytest.raises(zoo.InputError, match="unknown sampling field"):
        sampling_kwargs(cfg=2.0)  # the page calls it guidance


def tiny_var(num_classes: int = 4):
    torch.manual_seed(0)
    tok = dict(image_shape=[1, 12, 12], channels=8, latent_dim=8, codebook_size=16, scales=[1, 2, 3])
    m = zoo.create("var", tokenizer=tok, num_classes=num_classes, dim=32, depth=2, heads=2)
    for p in m.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.2)
    return m.eval()


def test_sample_with_settings_equals_the_keyword_form_and_a_keyword_overrides_a_field():
    m = tiny_var()
    m.card = replace(zoo.get_card("var-mnist"), sampling=dict(PRESET, classes="uniform"))
    for kw in (dict(), dict(temperature=1.3, top_k=None), dict(y=2, cfg=1.5, cfg_schedule="constant"),
               dict(y="null"), dict(y=[0, 1, 2, 3], top_p=0.8)):
        settings = SamplingSettings.from_sample_kwargs(**kw)
        for preset in (True, False):
            assert torch.equal(m.sample(4, seed=3, preset=preset, settings=settings),
                               m.sample(4, seed=3, preset=preset, **kw)), (kw, preset)
    assert torch.equal(m.sample(4, seed=3, settings=SamplingSettings(temperature=2.0, classes=1), temperature=0.8),
                       m.sample(4, seed=3, temperature=0.8, y=1))
    with pytest.raises(zoo.InputError, match="zoo.SamplingSettings"):
        m.sample(2, settings=dict(temperature=0.5))
    with pytest.raises(zoo.InputError, match="needs a class"):
        m.sample(2, settings=SamplingSettings(classes="null", cfg=2.0))
