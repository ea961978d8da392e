"""Training configuration: one YAML file, validated, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the data lives and how much of it to use (limits are for smoke runs and tests)."""

    root: Path = Path("../shared/datasets")
    fer2013: bool = True
    fer2013_csv: Path | None = None  # use the original fer2013.csv instead of the image folders
    ferplus_blend: float = Field(default=0.3, ge=0.0, lt=0.5)  # weight of FER+ votes in the emotion target
    utkface: bool = True
    aaf: bool = True  # All-Age-Faces (<root>/aaf): gender, mostly East Asian faces, loose framing
    lfw: bool = True  # LFW with its gender lists (<root>/lfw): tight news-photo crops, mostly men
    # LFW training images kept per person: a few public figures have hundreds of images, and
    # uncapped they would be a fifth of LFW's labels. 10 keeps 8,440 of 10,220 training images
    # (5,749 people appear at most 10 times); None: no cap.
    lfw_per_person: int | None = Field(default=10, ge=1)
    manifests: list[Path] = []  # user CSV manifests path,emotion,gender
    val_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)  # slice of FER2013 train used for validation
    limit_per_class: int | None = None  # FER2013 images per class (smoke runs)
    gender_limit: int | None = None  # faces per gender-labelled set: UTKFace, AAF, LFW (smoke runs)
    # A CSV with a ``file`` column naming UTKFace training faces to leave out, e.g. the labels that
    # ``facecast-train flag-labels`` finds a trained model confidently contradicting. Validation and
    # test never lose faces this way.
    utkface_exclude: Path | None = None
    test_limit: int | None = None  # test images per FER class / per gender set (smoke runs only)


class FramingConfig(_Strict):
    """Crop-scale augmentation: the side of the random crop as a fraction of the stored image."""

    canvas: int = 64
    tight_scale: tuple[float, float] = (0.82, 1.0)  # FER2013-style tight crops
    loose_scale: tuple[float, float] = (0.72, 1.0)  # UTKFace-style crops with context
    # AAF's stored image frames the face far more loosely than a detector box (hair, shoulders):
    # its crops reach from about the agent's own crop of the face up to the whole stored image.
    wide_scale: tuple[float, float] = (0.6, 1.05)
    shift: float = 0.06  # max centre shift as a fraction of the image side
    # Written into the card: crop margin per side of a detector box. BlazeFace boxes measured on the
    # datasets: whole FER2013 image = 1.14x the box side (median), whole UTKFace image = 1.07x, so 0.05
    # (1.10x) reproduces both native framings; training crops cover 0.77x-1.14x around that.
    agent_margin: float = 0.05
    # Crop at ``supersample`` x the input size, then average each k x k block down to the input.
    # The reporting protocol and the agent shrink a face with a box filter (INTER_AREA) straight
    # from the source; a bilinear crop-and-resize from a 64 px canvas to 48 px resamples twice and
    # aliases, so the model learned from softer faces than it is fed. With a canvas of k x input
    # that holds each image at an integer multiple of its native side (pixel replication), a crop
    # at scale 1 gives back exactly what the protocol feeds: FER2013's 48 px original and
    # UTKFace's 96 -> 48 px area average. 1: off, the crop goes straight to the input size.
    supersample: int = Field(default=1, ge=1, le=4)

    @field_validator("tight_scale", "loose_scale", "wide_scale")
    @classmethod
    def _scale_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        # Above 1.5 the reflected border would outweigh the face itself.
        if not 0.3 <= v[0] <= v[1] <= 1.5:
            raise ValueError(f"must be [low, high] with 0.3 <= low <= high <= 1.5, got {list(v)}")
        return v


class AugmentConfig(_Strict):
    flip: bool = True
    rotation_deg: float = 10.0
    brightness: float = 0.15
    contrast: float = 0.25


class DistillConfig(_Strict):
    """Soft targets from a teacher: an int8 model file with the facecast contract (e.g. a shipped one).

    The teacher's probabilities for every training image (its whole image, preprocessed as its card
    says) are computed once before training. A head that has a label learns from a blend of the
    label target and the teacher's; a head that has none (gender on FER2013, emotion on UTKFace)
    learns the teacher's probabilities at ``pseudo_weight``, so each head sees both datasets' faces.
    Never give a teacher that was trained on this run's validation split: its targets would leak it.
    """

    teacher: Path | None = None
    blend: float = Field(default=0.4, ge=0.0, lt=1.0)  # teacher's share of a labelled head's target
    pseudo_weight: float = Field(default=0.3, ge=0.0, le=1.0)  # loss weight of a teacher-only target


class TrainConfig(_Strict):
    seed: int = 1234
    architecture: Literal["vgg-s", "vgg-xs", "sep-s", "vgg-d"] = "vgg-xs"
    input_size: int = 48
    dropout: float = 0.4
    weight_decay: float = 1e-4
    batch_size: int = 64
    epochs: int = 40
    learning_rate: float = 2e-3
    # Adam (the default) or SGD with Nesterov momentum, which the FER2013 literature reports
    # generalising better on this data (Khaireddin & Chen 2021); SGD wants a higher rate (~1e-2).
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)  # SGD only
    warmup_epochs: int = 1
    early_stopping_patience: int = 8
    max_minutes: float | None = None  # wall-clock budget; the best checkpoint is kept
    class_weight_power: float = Field(default=0.5, ge=0.0, le=1.0)  # 0 none, 1 inverse frequency
    gender_loss_weight: float = 1.0
    # Label smoothing of the gender target: UTKFace's gender labels are noisy (the model card's audit),
    # and a smoothed target stops the network from chasing a wrong label to full confidence.
    gender_label_smoothing: float = Field(default=0.0, ge=0.0, lt=0.5)
    # Weight of a training-only age head's loss (a Huber loss on age / 100, UTKFace's age labels);
    # 0: no age head. The exported model keeps only the emotion and gender heads either way.
    age_loss_weight: float = Field(default=0.0, ge=0.0)
    # Filters of a gender-only copy of the backbone's last stage (0: fully shared backbone).
    gender_branch: int = Field(default=0, ge=0, le=512)
    # Keep an exponential moving average of the weights (Polyak averaging) and validate, checkpoint
    # and export that average instead of the last step's weights, which at a high learning rate
    # jump by several validation points from one epoch to the next. None: off.
    ema_momentum: float | None = Field(default=None, gt=0.0, lt=1.0)
    # Share of the gender-only samples (UTKFace) drawn afresh each epoch. Gender converges in far
    # fewer passes than emotion, so drawing fewer of them gives the emotion head more epochs
    # within the same wall-clock budget.
    gender_only_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    onednn: bool = True  # oneDNN is ~3x faster here; this architecture does not hit its crash
    # Compute dtype while training; "auto" picks mixed bfloat16 where the CPU has a native bfloat16
    # unit (AMX/AVX512-BF16), where it is about 20% faster, and float32 elsewhere, where it is slower.
    # The weights stay float32 either way and export rebuilds a float32 graph, so the int8 file does
    # not depend on it.
    precision: Literal["auto", "float32", "mixed_bfloat16"] = "auto"
    output_dir: Path = Path("runs/default")
    data: DataConfig = Field(default_factory=DataConfig)
    framing: FramingConfig = Field(default_factory=FramingConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    representative_samples: int = 500
    # Average each face with its mirror image inside the exported graph ("auto": only if that
    # raises the validation score; decided on validation data, never on test).
    flip_tta: bool | Literal["auto"] = "auto"
    # Feed the network the centre of its input, enlarged back to full size, inside the exported
    # graph: the central fraction ``zoom`` of each side. Training crops FER2013 faces at 0.82-1.0 of
    # the image (``framing.tight_scale``), so the whole image the reporting protocol and the agent
    # feed sits at the loose edge of what the emotion head learned from. "auto": the cheapest value
    # of ``export.ZOOM_GRID`` within 0.1 points of the best validation mean; 1.0: off.
    zoom: float | Literal["auto"] = "auto"
    # Shift the gender decision by one log-odds offset, chosen on the validation split so that male
    # and female recall are equal there, and bake it into the exported graph. Without it a run can
    # end with a several-point gap between the sexes that no accuracy figure shows.
    gender_balance: bool = True

    @field_validator("zoom", mode="before")
    @classmethod
    def _zoom_in_range(cls, v: object) -> object:
        number = isinstance(v, int | float) and not isinstance(v, bool)
        if v != "auto" and not (number and 0.5 <= float(v) <= 1.0):  # type: ignore[arg-type]
            raise ValueError(f"must be 'auto' or a number from 0.5 to 1.0, got {v!r}")
        return v

    @model_validator(mode="after")
    def _canvas_holds_supersampled_crop(self) -> TrainConfig:
        need = self.framing.supersample * self.input_size
        if self.framing.supersample > 1 and self.framing.canvas < need:
            raise ValueError(
                f"framing.canvas: must be at least supersample x input_size = {need} with supersample "
                f"{self.framing.supersample}, got {self.framing.canvas}"
            )
        return self


class ConfigError(Exception):
    """A training config that cannot be used; the message names the key."""


def load_config(path: Path | None, overrides: dict[str, object] | None = None) -> TrainConfig:
    raw: dict[str, object] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        raw = loaded
        base = path.parent
    else:
        base = Path.cwd()
    for key, value in (overrides or {}).items():
        target = raw
        *parents, leaf = key.split(".")
        for p in parents:
            nxt = target.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key}: {p} is not a section")
            target = nxt
        target[leaf] = value
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        # A check across sections (a model validator) has no location: its message names the key.
        raise ConfigError(f"config error: {where}: {msg}" if where else f"config error: {msg}") from None
    # Relative input paths in a config file are relative to that file, so configs are portable; the
    # output folder is relative to where the command runs.
    def under(root: Path, p: Path) -> Path:
        return p if p.is_absolute() else (root / p).resolve()

    cfg.data.root = under(base, cfg.data.root)
    cfg.output_dir = under(Path.cwd(), cfg.output_dir)
    cfg.data.manifests = [under(base, m) for m in cfg.data.manifests]
    if cfg.data.utkface_exclude is not None:
        cfg.data.utkface_exclude = under(base, cfg.data.utkface_exclude)
    if cfg.distill.teacher is not None:
        cfg.distill.teacher = under(base, cfg.distill.teacher)
    return cfg
