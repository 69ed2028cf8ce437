"""Sampling settings, one home: temperature, top-k, top-p, guidance, its schedule and the classes of a draw.

`SamplingSettings` is what `Model.sample`'s keywords, a card's `[sampling]` preset, the `zoo sample` / `zoo eval
--fid` flags and the demo page's Sample fields all mean. Each field declares (`Setting`) its default (the model's
own distribution), its TOML types in a preset, its flag and its page field, so a new setting is added here once.
A field left UNSET is not given: `resolved` fills it from the card's preset, else the default (given > preset >
default). No torch here: reading a card's preset needs none.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from .errors import CardError, InputError

#: how the guidance scale varies over a sampler's steps (zoo.logits explains both)
CFG_SCHEDULES = ("constant", "linear")

#: how a class-conditional model picks classes when none is given: one per image, uniformly (the VAR paper's
#: evaluation), or the null class (the unconditional model that class dropout trains)
CLASS_CHOICES = ("uniform", "null")


class _Unset:
    """The value of a setting that was not given (so that None can mean "off")."""

    _instance: "_Unset | None" = None

    def __new__(cls) -> "_Unset":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNSET"  # one instance, also across pickling (a settings object sent to another process)


#: marks a setting the caller did not give: the preset's value (or the default) is used
UNSET: Any = _Unset()


@dataclass(frozen=True)
class Setting:
    """How one sampling setting is spelled outside Python, and its default."""

    default: Any  #: the model's own distribution (no filtering, no guidance, no class)
    toml: tuple[type, ...]  #: the types a card's [sampling] table may give it
    flag: str  #: the `zoo sample` / `zoo eval` flag
    page: str  #: the demo page's Sample field (the /sample API's parameter)
    help: str  #: the flag's help
    keyword: str = ""  #: `Model.sample`'s keyword (default: the field's name)
    choices: tuple[str, ...] = ()  #: the only strings it takes (a preset's; a flag's unless `index`)
    index: bool = False  #: a flag or page value may also be a class index
    off: Any = UNSET  #: the flag's and page's spelling of None, if it has one (`--top-k 0`)


def _setting(**spec: Any) -> Any:
    return field(default=UNSET, metadata={"setting": Setting(**spec)})


def _problem(name: str, value: Any) -> str | None:
    """What is wrong with a value of setting `name` (None: nothing), in the words every caller shows."""
    try:
        if name == "temperature" and not value >= 0:
            return f"temperature must be >= 0 (0 means greedy), got {value}"
        if name == "top_k" and value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                                      or value < 1):
            return f"top_k must be a positive integer, got {value}"
        if name == "top_p" and value is not None and not 0 < value <= 1:
            return f"top_p must be in (0, 1], got {value}"
        if name == "cfg" and value is not None and not value >= 0:
            return f"cfg must be >= 0, got {value}"
    except TypeError:  # a string where a number belongs, say
        return f"{name} must be a number, got {type(value).__name__} {value!r}"
    if name == "cfg_schedule" and value not in CFG_SCHEDULES:
        return f"cfg_schedule must be one of {', '.join(map(repr, CFG_SCHEDULES))}, got {value!r}"
    if name == "classes" and isinstance(value, str) and value not in CLASS_CHOICES:
        return f"a class must be an integer, one integer per image, 'uniform' or 'null'; got {value!r}"
    return None


def check(name: str, value: Any) -> None:
    """Refuse a bad value of setting `name` with an InputError (LogitProcessor's checks are these)."""
    problem = _problem(name, value)
    if problem:
        raise InputError(problem)


@dataclass(frozen=True)
class SamplingSettings:
    """How `Model.sample` draws: each field given, or UNSET (the card's preset, else the default)."""

    temperature: float = _setting(
        default=1.0, toml=(int, float), flag="--temperature", page="temperature",
        help="default: the card's preset, else 1")
    top_k: int | None = _setting(
        default=None, toml=(int,), flag="--top-k", page="top_k", off=0,
        help="keep the k likeliest tokens (0: off)")
    top_p: float | None = _setting(
        default=None, toml=(int, float), flag="--top-p", page="top_p",
        help="nucleus sampling mass (1: off)")
    cfg: float | None = _setting(
        default=None, toml=(int, float), flag="--cfg", page="guidance",
        help="classifier-free guidance scale s: uncond + s * (cond - uncond); 1 is no guidance "
             "(the VAR reference's t is s - 1)")
    cfg_schedule: str = _setting(
        default="constant", toml=(str,), flag="--cfg-schedule", page="guidance_schedule", choices=CFG_SCHEDULES,
        help="guidance over the steps: constant s, or linear from 1 at the first step to s at the last "
             "(the VAR reference's ramp)")
    #: a class index, one per image (a sequence, kept as a tuple), "uniform", "null"; None is the deprecated
    #: spelling of "null" on a class-conditional model
    classes: Any = _setting(
        default=None, toml=(str,), flag="--class", page="class_label", keyword="y", choices=CLASS_CHOICES, index=True,
        help="a class index, 'uniform' (one per image), 'null' (the unconditional model)")

    def __post_init__(self) -> None:
        if self.classes is not UNSET and hasattr(self.classes, "tolist"):  # a tensor or an array of classes
            object.__setattr__(self, "classes", self.classes.tolist())
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(self.classes))
        for name, value in self.given().items():
            check(name, value)

    # ---- the fields ---------------------------------------------------------------------------------------------

    @classmethod
    def spec(cls) -> dict[str, Setting]:
        """Each field's Setting, in field order (the order of the flags and of a recorded command)."""
        return {f.name: f.metadata["setting"] for f in fields(cls)}

    @classmethod
    def defaults(cls) -> "SamplingSettings":
        """Every field at its default: the model's own distribution, no class."""
        return cls(**{name: s.default for name, s in cls.spec().items()})

    def given(self) -> dict[str, Any]:
        """The fields that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not UNSET}

    # ---- the places settings come from --------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, table: Any, source: str = "<card>") -> "SamplingSettings":
        """A card's [sampling] table, checked: its TOML types, its strings, its values (CardErrors name `source`
        and the field)."""
        if not isinstance(table, Mapping):
            raise CardError(f"{source}: 'sampling' must be a table")
        known = cls.spec()
        for key, value in table.items():
            if key not in known:
                raise CardError(f"{source}: unknown field 'sampling.{key}'; a sampling preset takes "
                                f"{', '.join(known)}")
            types, choices = known[key].toml, known[key].choices
            if isinstance(value, bool) or not isinstance(value, types):
                raise CardError(f"{source}: field 'sampling.{key}' must be {' or '.join(t.__name__ for t in types)}, "
                                f"got {type(value).__name__} {value!r}")
            if choices and value not in choices:
                raise CardError(f"{source}: field 'sampling.{key}' must be one of {', '.join(map(repr, choices))}, "
                                f"got {value!r}")
            problem = _problem(key, value)
            if problem:
                raise CardError(f"{source}: bad [sampling] preset: {problem}")
        return cls(**table)

    @classmethod
    def from_sample_kwargs(cls, settings: "SamplingSettings | None" = None, **kwargs: Any) -> "SamplingSettings":
        """What a `Model.sample` call was given: its keywords (UNSET: not given; `y` is classes) over `settings`.
        Other sample keywords (seed, preset, batch_size ...) are ignored."""
        names = {s.keyword or name: name for name, s in cls.spec().items()}
        given = cls(**{names[k]: v for k, v in kwargs.items() if k in names and v is not UNSET})
        if settings is not None and not isinstance(settings, SamplingSettings):
            raise InputError(f"settings must be a zoo.SamplingSettings, got {type(settings).__name__}")
        return given.over(settings) if settings is not None else given

    @classmethod
    def from_text(cls, **values: Any) -> "SamplingSettings":
        """Settings from flag or page values by field name: None or '' is not given, a setting's `off` spelling
        is None (`--top-k 0`), a whole float is an int where an int belongs, and a class is an index ('3' or
        '3: cat'), 'uniform' or 'null'."""
        known = cls.spec()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"unknown sampling setting(s) {unknown}; known: {', '.join(known)}")
        out = {}
        for name, value in values.items():
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if int in known[name].toml and float not in known[name].toml and isinstance(value, float) \
                    and value.is_integer():
                value = int(value)
            if name == "classes" and isinstance(value, (str, int)):
                value = parse_class(value)
            out[name] = None if known[name].off is not UNSET and value == known[name].off else value
        return cls(**out)

    # ---- merging and using them ---------------------------------------------------------------------------------

    def over(self, other: "SamplingSettings") -> "SamplingSettings":
        """These settings, with each field not given here taken from `other`."""
        return replace(other, **self.given())

    def resolved(self, preset: "SamplingSettings | Mapping[str, Any] | None" = None) -> "SamplingSettings":
        """Every field: given here, else the preset's, else the default. The null class turns a preset's guidance
        off (there is no class to guide towards); guidance given here with the null class is refused."""
        if isinstance(preset, Mapping):
            preset = SamplingSettings.from_preset(preset)
        out = self.over((preset or SamplingSettings()).over(self.defaults()))
        if out.classes == "null" and out.cfg is not None:
            if self.cfg is not UNSET:
                raise InputError("classifier-free guidance needs a class: give a class or 'uniform', not 'null', "
                                 "with cfg")
            out = replace(out, cfg=None)
        return out

    def processor(self) -> Any:
        """The zoo.LogitProcessor of these settings (a field not given: its default)."""
        from .logits import LogitProcessor
        s = self.over(self.defaults())
        return LogitProcessor(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, cfg=s.cfg,
                              cfg_schedule=s.cfg_schedule)

    def sample_kwargs(self, unset: bool = False) -> dict[str, Any]:
        """`Model.sample` keyword arguments for the fields given (with `unset`: every field, UNSET where not)."""
        return {(s.keyword or name): getattr(self, name) for name, s in self.spec().items()
                if unset or getattr(self, name) is not UNSET}

    # ---- saying them --------------------------------------------------------------------------------------------

    def flags(self) -> str:
        """The `zoo sample` flags that give these settings (None as its `off` spelling), each with a leading
        space."""
        out = ""
        for name, value in self.given().items():
            s = self.spec()[name]
            if value is None and s.off is not UNSET:
                value = s.off
            out += f" {s.flag} {value}"
        return out

    def describe(self) -> str:
        """One line of the fields given, as key=value pairs ("none" when none is)."""
        return ", ".join(f"{k}={v}" for k, v in self.given().items()) or "none"

    def note(self, num_classes: int = 0, preset: "SamplingSettings | Mapping[str, Any] | None" = None) -> str:
        """How a sample set was drawn, for a card's note: these settings resolved over `preset` (classes and
        guidance for a class-conditional model, then temperature, top-k, top-p where they filter)."""
        s = self.over((SamplingSettings.from_preset(preset) if isinstance(preset, Mapping) else preset
                       or SamplingSettings()).over(self.defaults()))
        parts = [f"{k} {getattr(s, k)}" for k in ("temperature", "top_k", "top_p")
                 if getattr(s, k) not in (None, 1.0)]
        if num_classes:
            classes = s.classes
            parts.insert(0, "classes " + ("uniform" if classes == "uniform" else
                                          f"{classes}" if classes not in (None, "null") else "null (unconditional)"))
            if s.cfg is not None and classes not in (None, "null"):
                parts.append(f"cfg {s.cfg} {s.cfg_schedule}")
            else:
                parts.append("no guidance")
        return ", ".join(parts)


def parse_class(value: Any) -> Any:
    """A class from a flag or the page: 'uniform', 'null', or an index ('3' or '3: cat')."""
    if isinstance(value, str) and value.strip() in CLASS_CHOICES:
        return value.strip()
    try:
        return int(str(value).split(":")[0])
    except ValueError:
        raise InputError(f"a class is 'uniform', 'null' or a class index, got {value!r}") from None
