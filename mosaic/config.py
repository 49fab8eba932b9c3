"""RunConfig: every parameter of a run in one validated dataclass.

The config is saved inside every checkpoint and in ``metrics.json``, so a number always travels with
the exact parameters that produced it. Validation happens at construction and names the valid
choices, so a typo in a papermill ``-p`` flag fails at once and says what to type instead.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

METHODS = ("mosaickd", "kd_ood", "datafree", "kd_indomain", "scratch")
DISCRIMINATORS = ("patch", "full", "none")
D_NORMS = ("batch", "spectral")
D_LOSSES = ("bce", "hinge")
D_AUGMENTS = ("translation", "cutout")  # d_augment's policies (mosaic.augment), joined by "+"
BALANCE_BG = ("class", "free", "ood")
PRECISIONS = ("fp32", "bf16", "fp16")
LOGGERS = ("none", "tensorboard")


@dataclass
class RunConfig:
    # --- what is distilled into what
    method: str = "mosaickd"  # one of METHODS
    dataset: str = "fmnist"  # in-domain dataset (the teacher's); its test split scores the student
    ood: str = "mnist5k"  # out-of-domain image source (a dataset name or folder:PATH)
    ood_subset: int = 0  # >0: keep the N highest-teacher-entropy OOD images (the paper's † rows)
    teacher: str = "lenet5"  # teacher architecture (see mosaic.models.CLASSIFIERS)
    student: str = "lenet5_half"  # student architecture
    teacher_ckpt: str = ""  # path of a teacher file to load; "" = the cached/trained one below
    teacher_epochs: int = 0  # epochs when the teacher has to be trained (cached); 0: auto, the budget follows the data
    teacher_seed: int = 0  # the teacher's own seed: every student seed distills the same teacher
    teacher_dir: str = "checkpoints/teachers"  # teacher cache
    data_root: str = "data"  # where datasets live / are downloaded to
    download: bool = False  # allow torchvision downloads
    # --- budget: `steps` outer iterations, each with `kd_steps` student updates on `batch_size` images
    steps: int = 200  # outer iterations (D step, G step, kd_steps student steps)
    kd_steps: int = 5  # student updates per outer iteration
    batch_size: int = 128  # synthetic batch; mosaickd's student batch adds as many real OOD images
    # --- optimisation
    lr_s: float = 0.1  # student SGD lr (cosine to 0 over `steps`)
    momentum_s: float = 0.9  # student SGD momentum
    wd_s: float = 1e-4  # student weight decay
    lr_g: float = 1e-3  # generator Adam lr (cosine)
    lr_d: float = 1e-3  # discriminator Adam lr (cosine)
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas for generator and discriminator
    t_kd: float = 1.0  # distillation temperature
    t_adv: float = 0.0  # generator methods: temperature of the adversarial term (Eq. 7); 0: t_kd, the same T (paper)
    student_ood: bool = True  # mosaickd: the student's batch joins real OOD images to the mosaics (paper)
    warmup_gan: int = 0  # mosaickd: iterations of the patch GAN alone (D, then G on loss_local) before the game (paper: 0)
    pool: int = 0  # generator methods: >0, the student's synthetic images are drawn from the last N synthesized (mosaic.pool; paper: 0)
    warmup_s: float = 0.25  # student lr rises linearly over this fraction of the game's steps, then the cosine (paper: 0)
    ema_s: float = 0.0  # >0: the run's student is an EMA of the trained one's weights, this decay per game iteration (mosaic.ema; paper: 0)
    # --- the generator's loss weights (paper README values)
    w_local: float = 1.0  # scales loss_local (patch GAN term, Eq. 3)
    w_align: float = 1.0  # scales loss_align (teacher entropy, Eq. 4)
    w_balance: float = 10.0  # scales loss_balance (class-marginal negative entropy)
    balance_bg: str = "class"  # segmentation, class 0 = background, in loss_balance: class (one of K, paper) | free (left out)
    # | ood (its share pinned to the teacher's mean background probability on the real OOD images; mosaickd)
    w_adv: float = 1.0  # scales loss_adv (-KL(teacher || student), Eq. 7)
    # --- players
    z_dim: int = 100  # generator latent size
    ngf: int = 32  # generator width (paper: 128; 32 keeps CPU runs fast)
    ndf: int = 64  # discriminator width (paper: 128)
    discriminator: str = "patch"  # patch | full | none
    d_norm: str = "batch"  # the discriminator's normalisation: batch (BatchNorm, paper) | spectral (spectral norm, no BN)
    d_loss: str = "bce"  # the patch GAN's loss (D and loss_local): bce (non-saturating, paper) | hinge
    d_r1: float = 0.0  # R1 weight γ: D's loss adds γ/2·E‖∇ₓ mean-patch D(x')‖² on real OOD images (0: off, paper)
    d_augment: str = "none"  # D sees real and synthetic images through these differentiable transforms (mosaic.augment):
    # none (paper) | translation | cutout | translation+cutout
    patch_size: int = 10  # receptive field of the patch discriminator in pixels
    # --- bookkeeping
    seed: int = 0  # seeds torch, numpy, random and every batcher
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 1  # torch intra-op CPU threads for the run and its teacher (0: torch's default); changes numbers
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 only on CUDA)
    channels_last: bool = False  # NHWC memory format for student, generator, discriminator
    compile: bool = False  # torch.compile the student, generator and discriminator
    eval_every: int = 50  # evaluate the student on in-domain val every N steps (0: only at the end)
    ckpt_every: int = 50  # write a checkpoint every N steps (and at the end)
    out_dir: str = "runs/demo"  # run folder: metrics.json, history.csv, checkpoint.pt, samples.png
    resume: bool = True  # continue from out_dir/checkpoint.pt when it exists
    sync_bn: bool = True  # under torchrun: BatchNorm over the global batch (one process's numbers); False: per rank
    logger: str = "none"  # none | tensorboard: history, eval numbers and sample grids as event files in out_dir

    # fields that never change a run's numbers: they may differ between a run and its resumption, and two
    # configs that differ only in them give the same results (``same_results``)
    NEUTRAL: ClassVar[frozenset[str]] = frozenset({
        "out_dir", "resume", "device", "eval_every", "ckpt_every", "data_root", "download", "teacher_dir",
        "channels_last", "compile", "logger"})

    def __post_init__(self) -> None:
        self._check_types()  # papermill, YAML and CLI values arrive untyped: wrong types fail here, by name
        _choice("method", self.method, METHODS)
        _choice("discriminator", self.discriminator, DISCRIMINATORS)
        _choice("d_norm", self.d_norm, D_NORMS)
        _choice("d_loss", self.d_loss, D_LOSSES)
        d_augment_policies(self.d_augment)
        _choice("balance_bg", self.balance_bg, BALANCE_BG)
        _choice("precision", self.precision, PRECISIONS)
        _choice("logger", self.logger, LOGGERS)
        for name in ("steps", "kd_steps", "batch_size", "z_dim", "ngf", "ndf"):
            _at_least(name, getattr(self, name), 1)
        for name in ("eval_every", "ckpt_every", "ood_subset", "seed", "teacher_seed", "warmup_gan",
                     "threads", "teacher_epochs", "pool"):
            _at_least(name, getattr(self, name), 0)
        for name in ("lr_s", "lr_g", "lr_d", "t_kd"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"RunConfig.{name} must be a finite number > 0, got {getattr(self, name)}")
        if not 0 <= self.t_adv < math.inf:
            raise ValueError(f"RunConfig.t_adv must be a finite number > 0, or 0 for t_kd's, got {self.t_adv}")
        for name in ("w_local", "w_align", "w_balance", "w_adv", "wd_s"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"RunConfig.{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0 <= self.momentum_s < 1:
            raise ValueError(f"RunConfig.momentum_s must be in [0, 1), got {self.momentum_s}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"RunConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if self.warmup_gan and not self.uses_discriminator:
            raise ValueError(f"RunConfig.warmup_gan={self.warmup_gan} needs a discriminator to warm up against: "
                             f"method='mosaickd' with discriminator 'patch' or 'full' (got {self.method!r}, "
                             f"{self.discriminator!r}); or set warmup_gan=0")
        if not 0 <= self.d_r1 < math.inf:
            raise ValueError(f"RunConfig.d_r1 must be a finite number >= 0 (0: no R1 penalty), got {self.d_r1}")
        if (self.d_r1 or self.d_loss != "bce" or self.d_augment != "none") and not self.uses_discriminator:
            raise ValueError(f"RunConfig.d_loss={self.d_loss!r}, d_r1={self.d_r1}, d_augment={self.d_augment!r} shape "
                             f"the patch GAN, and method={self.method!r}, discriminator={self.discriminator!r} has none: "
                             "use method 'mosaickd' with discriminator 'patch' or 'full', or set d_loss='bce', d_r1=0, "
                             "d_augment='none'")
        if self.balance_bg != "class" and not self.uses_generator:
            raise ValueError(f"RunConfig.balance_bg={self.balance_bg!r} shapes the generator's balance term, and "
                             f"method={self.method!r} has no generator: use 'mosaickd' or 'datafree', or set 'class'")
        if self.balance_bg == "ood" and not self.uses_ood:
            raise ValueError(f"RunConfig.balance_bg='ood' reads the teacher on the real OOD images, which "
                             f"method={self.method!r} does not see: use 'mosaickd', or balance_bg 'class' or 'free'")
        if self.t_adv and not self.uses_generator:
            raise ValueError(f"RunConfig.t_adv={self.t_adv} is the temperature of the generator's adversarial term, "
                             f"and method={self.method!r} has no generator: use 'mosaickd' or 'datafree', or set t_adv=0")
        if self.pool and not self.uses_generator:
            raise ValueError(f"RunConfig.pool={self.pool} replays synthetic images, and method={self.method!r} has no "
                             "generator: use 'mosaickd' or 'datafree', or set pool=0")
        if not 0 <= self.warmup_s < 1:
            hint = (f" (warmup_s is a fraction of the run: {self.warmup_s:g} iterations of steps={self.steps} is "
                    f"warmup_s={self.warmup_s / self.steps:g})" if 1 < self.warmup_s <= self.steps else "")
            raise ValueError(f"RunConfig.warmup_s must be a fraction of the run in [0, 1), got {self.warmup_s}{hint}")
        if not 0 <= self.ema_s < 1:
            raise ValueError(f"RunConfig.ema_s is a decay per game iteration in [0, 1) (0: off; 0.99 averages about "
                             f"the last 100 iterations), got {self.ema_s}")
        if self.discriminator == "patch" and self.patch_size < 2:
            raise ValueError(f"RunConfig.patch_size must be >= 2, got {self.patch_size}")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"RunConfig.device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if not self.out_dir.strip():
            raise ValueError("RunConfig.out_dir must name a folder, got an empty string")

    def _check_types(self) -> None:
        """Each field holds its annotated type (numpy scalars included, e.g. from a DataFrame row): ints are whole
        numbers (2.0 -> 2; 1.5 is an error), floats
        are numbers (1 -> 1.0, so equal configs compare equal), bools are True/False, strings are strings."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), str(f.type)
            wrong = ValueError(f"RunConfig.{f.name} must be {_KINDS.get(kind, kind)}, got {value!r} "
                               f"({type(value).__name__})")
            if kind == "bool":
                if not isinstance(value, bool):
                    raise wrong
            elif kind == "int":
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                        not (isinstance(value, numbers.Integral) or float(value).is_integer()):
                    raise wrong
                setattr(self, f.name, int(value))
            elif kind == "float":
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise wrong
                setattr(self, f.name, float(value))
            elif kind == "str" and not isinstance(value, str):
                raise wrong
            elif f.name == "betas":  # YAML/papermill give lists
                if isinstance(value, (str, bytes)) or not all(isinstance(b, numbers.Real) and not isinstance(b, bool)
                                                               for b in value):
                    raise wrong
                self.betas = tuple(float(b) for b in value)

    @property
    def adv_temperature(self) -> float:
        """The adversarial term's temperature: t_adv, or t_kd's when t_adv is 0 (the paper's coupling)."""
        return self.t_adv or self.t_kd

    @property
    def uses_generator(self) -> bool:
        return self.method in ("mosaickd", "datafree")

    @property
    def uses_discriminator(self) -> bool:
        return self.method == "mosaickd" and self.discriminator != "none"

    @property
    def warmup_iterations(self) -> int:
        """The student's lr warm-up in game iterations: ``warmup_s`` of ``steps``, rounded (0.25 of 200 = 50)."""
        return round(self.warmup_s * self.steps)

    @property
    def uses_ood(self) -> bool:
        return self.method in ("mosaickd", "kd_ood")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a dict (papermill parameters, YAML, a checkpoint); unknown keys are errors."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]) -> "RunConfig":
        """Pick the RunConfig fields out of a namespace, e.g. a notebook's ``globals()``."""
        return cls(**{f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace})

    def replace(self, **changes: Any) -> "RunConfig":
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def results_key(self) -> dict[str, Any]:
        """The fields that decide a run's numbers (all but ``NEUTRAL``), numbers typed like the defaults."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in self.NEUTRAL:
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def results_diff(self, other: "RunConfig | Mapping[str, Any]") -> dict[str, tuple[Any, Any]]:
        """{field: (other's value, this one's)} for every result-deciding field that differs.

        ``other`` may be a saved config dict (metrics.json, a checkpoint); its missing fields take the
        defaults. A dict this RunConfig cannot read (unknown fields, invalid values) differs in
        ``"<config>"``, with the reason.
        """
        if not isinstance(other, RunConfig):
            try:
                other = RunConfig.from_dict(dict(other))
            except (TypeError, ValueError) as err:
                return {"<config>": (str(err), "readable")}
        mine, theirs = self.results_key(), other.results_key()
        return {k: (theirs[k], v) for k, v in mine.items() if theirs[k] != v}

    def same_results(self, other: "RunConfig | Mapping[str, Any]") -> bool:
        """True when ``other`` (a RunConfig or a saved config dict) gives the same numbers as this config."""
        return not self.results_diff(other)

    def __str__(self) -> str:
        return (f"RunConfig({self.method}: {self.teacher}->{self.student} on {self.dataset}, "
                f"ood={self.ood}, steps={self.steps}x{self.kd_steps}, batch={self.batch_size}, seed={self.seed})")


_KINDS = {"bool": "True or False", "int": "a whole number", "float": "a number", "str": "a string",
          "tuple[float, float]": "two numbers"}


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"RunConfig.{name} must be >= {low}, got {value}")


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"RunConfig.{name}={value!r} is not valid; choose one of {', '.join(valid)}")


def d_augment_policies(policy: str) -> tuple[str, ...]:
    """``"translation+cutout"`` -> ("translation", "cutout"); ``"none"`` -> (); anything else names the valid policies."""
    if policy == "none":
        return ()
    names = tuple(policy.split("+"))
    unknown = [n for n in names if n not in D_AUGMENTS]
    if unknown:
        raise ValueError(f"RunConfig.d_augment={policy!r}: {', '.join(map(repr, unknown))} is not a policy; use 'none' "
                         f"or one or more of {', '.join(D_AUGMENTS)} joined by '+', e.g. 'translation+cutout'")
    return names


def resolve_device(device: str) -> "str":
    """'auto' → 'cuda' when available, else 'cpu'; an explicit 'cuda' without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} requested but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    return device


__all__ = ["RunConfig", "METHODS", "DISCRIMINATORS", "D_NORMS", "D_LOSSES", "D_AUGMENTS", "BALANCE_BG", "PRECISIONS", "LOGGERS",
           "d_augment_policies", "resolve_device"]
